//! Bidirectional emulation for clients that cannot open a WebSocket (the
//! centrifuge SDKs' `http_stream` and `sse` transports): the connection is a
//! streamed response ([`stream`]) opened by `/connection/http_stream`
//! ([`http_stream`], JSON or Protobuf) or `/connection/sse` with a connect
//! command ([`sse`], JSON only); the client's further commands arrive as
//! `POST /emulation` requests naming the session and its node ([`receive`]),
//! and a request for a session on another node is sent there through the engine.

pub mod http_stream;
pub mod sse;
pub mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_core::control::{self, ClientFrame};
use herald_core::protocol::{self, command, protobuf, Format};
use serde::Deserialize;
use tracing::debug;

use crate::cors;
use crate::hub::emulation::Delivery;
use crate::Gateway;

/// Path of the endpoint that takes the client's commands.
pub const PATH: &str = "/emulation";

/// Longest session or node id accepted (both are UUIDs).
const MAX_ID: usize = 64;

/// `POST /emulation` body of a JSON-protocol client (centrifuge-js
/// `transport_http_stream.ts`/`transport_sse.ts` `send`; Centrifugo's
/// `EmulationRequest`): `data` is the client's frame as a JSON string.
#[derive(Debug, Deserialize)]
struct JsonRequest {
    session: String,
    node: String,
    data: String,
}

/// An `/emulation` request of either format.
struct Request {
    session: String,
    node: String,
    data: ClientFrame,
}

impl Request {
    /// Reads a JSON body, or a Protobuf `EmulationRequest` whose `data`
    /// holds length-delimited `Command`s (centrifuge-js's Protobuf build).
    fn parse(format: Format, body: Bytes) -> Result<Request, String> {
        match format {
            Format::Json => {
                let r: JsonRequest = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                Ok(Request {
                    session: r.session,
                    node: r.node,
                    data: ClientFrame::Json(r.data),
                })
            }
            Format::Protobuf => {
                let r = protobuf::emulation_request(body).map_err(|e| e.to_string())?;
                Ok(Request {
                    session: r.session,
                    node: r.node,
                    data: ClientFrame::Protobuf(r.data),
                })
            }
        }
    }
}

/// `POST /emulation`: hands the frame to its session, on this node or on the
/// node named in the request. Answers as Centrifugo does: `204` once the frame
/// is on its way (an unknown session of a live node included), `404` for an
/// unknown node; besides, `400` for a malformed request, `413` for a body over
/// `client.max_message_size`, `429` when the session already has too many
/// frames waiting, `503` when the engine cannot forward. The body is JSON, or
/// Protobuf with `Content-Type: application/octet-stream`.
pub async fn receive(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let origin = match cors::check(&gw, &headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let format = body_format(&headers);
    let mut response = match read_body(&gw, body).await {
        Ok(body) => route(&gw, format, body).await,
        Err(refused) => refused,
    };
    cors::allow(&mut response, origin);
    response
}

async fn route(gw: &Gateway, format: Format, body: Bytes) -> Response {
    let request = match Request::parse(format, body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("malformed emulation request: {e}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    if !is_id(&request.session) || !is_id(&request.node) {
        return (StatusCode::BAD_REQUEST, "malformed session or node").into_response();
    }
    let metrics = &gw.metrics;
    if request.node == gw.hub.uid() {
        let outcome = gw.hub.emulation().deliver(&request.session, request.data);
        return match outcome {
            Delivery::Queued => {
                metrics.emulation_request("local");
                StatusCode::NO_CONTENT.into_response()
            }
            Delivery::Unknown => {
                metrics.emulation_request("unknown_session");
                StatusCode::NO_CONTENT.into_response()
            }
            Delivery::Busy => {
                metrics.emulation_request("busy");
                (StatusCode::TOO_MANY_REQUESTS, "too many commands waiting").into_response()
            }
        };
    }
    let emulation = control::Emulation {
        session: request.session,
        data: request.data,
    };
    match gw.engine.send_to_node(&request.node, &emulation).await {
        Ok(true) => {
            metrics.emulation_request("forwarded");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => {
            metrics.emulation_request("unknown_node");
            (StatusCode::NOT_FOUND, "unknown node").into_response()
        }
        Err(e) => {
            debug!(node = %request.node, error = %e, "emulation request not forwarded");
            (StatusCode::SERVICE_UNAVAILABLE, "engine unavailable").into_response()
        }
    }
}

/// Session and node ids are UUIDs: nothing else goes into a pub/sub channel name.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The format of a request body: Protobuf when it says
/// `Content-Type: application/octet-stream` (as centrifuge-js's Protobuf
/// build and Centrifugo do), JSON otherwise.
pub fn body_format(headers: &HeaderMap) -> Format {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    if protobuf {
        Format::Protobuf
    } else {
        Format::Json
    }
}

/// A request body, at most `client.max_message_size` bytes.
async fn read_body(gw: &Gateway, body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, gw.config.max_message_size)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response())
}

/// Whether the first command of a connection's opening frame is `connect`
/// (anything else, or a frame that does not decode, is refused before a
/// stream opens).
fn opens_with_connect(frame: &ClientFrame) -> bool {
    let first = match frame {
        ClientFrame::Json(text) => command::parse_frame(text)
            .ok()
            .and_then(|commands| commands.into_iter().next())
            .map(|c| c.into_request().1),
        ClientFrame::Protobuf(bytes) => protobuf::parse_frame(bytes)
            .ok()
            .and_then(|commands| commands.into_iter().next())
            .map(|(_, request)| request),
    };
    matches!(first, Some(protocol::Request::Connect(_)))
}

/// Whether a `cf_connect` value is a protocol command (the SDK's
/// `{"id":1,"connect":{..}}`) rather than Herald's one-way SSE form, a bare
/// connect request (`{"token":..}`).
pub fn is_connect_command(cf_connect: &str) -> bool {
    let first = cf_connect.split('\n').next().unwrap_or_default();
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(first)
        .is_ok_and(|command| command.contains_key("connect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_command_selects_emulation() {
        assert!(is_connect_command(
            r#"{"id":1,"connect":{"token":"t","name":"js"}}"#
        ));
        assert!(is_connect_command(r#"{"connect":{}}"#));
        assert!(!is_connect_command(r#"{"token":"t"}"#));
        assert!(!is_connect_command("not json"));
        assert!(!is_connect_command(r#"["connect"]"#));
    }

    #[test]
    fn a_connection_opens_with_connect_in_either_format() {
        assert!(opens_with_connect(&ClientFrame::Json(
            r#"{"id":1,"connect":{"token":"t"}}"#.into()
        )));
        assert!(!opens_with_connect(&ClientFrame::Json(
            r#"{"id":1,"ping":{}}"#.into()
        )));
        assert!(!opens_with_connect(&ClientFrame::Json(String::new())));
        // `Command { id: 1, connect: {} }`, length-delimited.
        let frame = Bytes::from_static(&[4, 0x08, 1, 0x22, 0]);
        assert!(opens_with_connect(&ClientFrame::Protobuf(frame.clone())));
        assert!(!opens_with_connect(&ClientFrame::Protobuf(
            frame.slice(1..)
        )));
        assert!(!opens_with_connect(&ClientFrame::Protobuf(Bytes::new())));
        assert!(!opens_with_connect(&ClientFrame::Protobuf(
            Bytes::from_static(&[0])
        )));
    }

    #[test]
    fn ids_are_uuid_shaped() {
        assert!(is_id("0b8f7c1e-7a4f-4c39-9a57-2d1c0e6f5a11"));
        assert!(!is_id(""));
        assert!(!is_id("a}b"));
        assert!(!is_id("x.control"));
        assert!(!is_id(&"a".repeat(MAX_ID + 1)));
    }
}
