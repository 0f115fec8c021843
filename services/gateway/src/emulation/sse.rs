//! SSE emulation on `/connection/sse`: the connect command comes in the
//! `cf_connect` query parameter of a GET (what centrifuge-js's `sse`
//! transport sends, via `EventSource`) or as the body of a POST (as
//! Centrifugo also accepts); replies and pushes go out as `data:` events.
//! A GET whose `cf_connect` is not a command stays Herald's one-way SSE.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;

use super::stream::{self, Wire};
use crate::Gateway;

/// Opens an SSE emulation connection with the GET's `cf_connect` frame.
pub async fn open(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    cf_connect: &str,
) -> Response {
    stream::open(gw, headers, peer, cf_connect, Wire::Sse).await
}

/// `POST /connection/sse`: the body is the connect frame.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = remote.map(|Extension(ConnectInfo(addr))| addr);
    stream::open_posted(gw, &headers, peer, body, Wire::Sse).await
}
