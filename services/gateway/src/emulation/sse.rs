//! SSE emulation on `/connection/sse`: the connect command comes in the
//! `cf_connect` query parameter of a GET (what centrifuge-js's `sse`
//! transport sends, via `EventSource`) or as the body of a POST (as
//! Centrifugo also accepts); replies and pushes go out as `data:` events.
//! A GET whose `cf_connect` is not a command stays Herald's one-way SSE.
//! JSON only: centrifuge-js's Protobuf build puts its binary connect frame
//! in the URL as a list of byte values and reads events as text, so it
//! cannot work; such requests are refused with `415` ([`refuse_protobuf`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use herald_core::control::ClientFrame;
use herald_core::protocol::Format;

use super::stream::{self, Wire};
use crate::cors;
use crate::Gateway;

/// Why a Protobuf client is refused here.
const JSON_ONLY: &str =
    "the sse transport carries the JSON protocol only: Protobuf clients use http_stream or websocket";

/// Opens an SSE emulation connection with the GET's `cf_connect` frame.
pub async fn open(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    cf_connect: &str,
) -> Response {
    let connect = ClientFrame::Json(cf_connect.to_owned());
    stream::open(gw, headers, peer, connect, Wire::Sse).await
}

/// `POST /connection/sse`: the body is the connect frame.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = remote.map(|Extension(ConnectInfo(addr))| addr);
    if super::body_format(&headers) == Format::Protobuf {
        return refuse_protobuf(&gw, &headers);
    }
    stream::open_posted(gw, &headers, peer, body, Wire::Sse).await
}

/// Whether a GET's `cf_connect` is a Protobuf frame as centrifuge-js's
/// Protobuf build sends it (its bytes' decimal values joined by commas,
/// what `URLSearchParams` makes of a `Uint8Array`): a connect command is
/// never shorter than two bytes.
pub fn is_stringified_protobuf(cf_connect: &str) -> bool {
    let mut values = 0;
    for value in cf_connect.split(',') {
        if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        values += 1;
    }
    values >= 2
}

/// `415` with the reason, for a Protobuf client (with CORS headers for an
/// accepted origin, so that a page can read why).
pub fn refuse_protobuf(gw: &Gateway, headers: &HeaderMap) -> Response {
    let origin = match cors::check(gw, headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let mut response = (StatusCode::UNSUPPORTED_MEDIA_TYPE, JSON_ONLY).into_response();
    cors::allow(&mut response, origin);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_list_is_a_protobuf_frame_and_json_is_not() {
        assert!(is_stringified_protobuf("10,45,8,1,34"));
        assert!(!is_stringified_protobuf("7"));
        assert!(!is_stringified_protobuf(r#"{"id":1,"connect":{}}"#));
        assert!(!is_stringified_protobuf("1,,2"));
        assert!(!is_stringified_protobuf("1,2000"));
        assert!(!is_stringified_protobuf(""));
    }
}
