//! `/connection/http_stream`: the SDK POSTs its connect command as the body
//! and reads the response as newline-delimited JSON replies and pushes, or,
//! with `Content-Type: application/octet-stream`, as length-delimited
//! Protobuf ones.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;

use super::stream::{self, Wire};
use crate::Gateway;

/// Path of the endpoint.
pub const PATH: &str = "/connection/http_stream";

/// `POST /connection/http_stream`.
pub async fn open(
    State(gw): State<Arc<Gateway>>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = remote.map(|Extension(ConnectInfo(addr))| addr);
    let wire = Wire::HttpStream(super::body_format(&headers));
    stream::open_posted(gw, &headers, peer, body, wire).await
}
