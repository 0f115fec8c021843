//! The unidirectional HTTP streams: `/connection/uni_sse` (`GET` with the
//! connect request as JSON in the `cf_connect` query parameter, or `POST` with
//! it as the body; `text/event-stream`, a `data:` event per push) and
//! `/connection/uni_http_stream` (`POST`; one push per line). As in
//! Centrifugo, a refused connect still answers `200`: the stream carries the
//! disconnect push and ends. CORS as for `/connection/sse` ([`crate::cors`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use herald_core::metrics::labels::Transport;
use herald_core::protocol::command::ConnectRequest;
use serde::Deserialize;

use super::{push, Framing, Stream, Taken};
use crate::cors;
use crate::Gateway;

/// Path of the unidirectional SSE endpoint.
pub const SSE_PATH: &str = "/connection/uni_sse";

/// Path of the unidirectional HTTP-streaming endpoint.
pub const STREAM_PATH: &str = "/connection/uni_http_stream";

/// `GET /connection/uni_sse` query.
#[derive(Debug, Deserialize)]
pub struct SseQuery {
    /// The connect request, JSON.
    cf_connect: Option<String>,
}

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer(remote: Peer) -> Option<SocketAddr> {
    remote.map(|Extension(ConnectInfo(addr))| addr)
}

/// `GET /connection/uni_sse?cf_connect=<json>` (no parameter: an empty connect request).
pub async fn sse_get(
    State(gw): State<Arc<Gateway>>,
    remote: Peer,
    headers: HeaderMap,
    Query(query): Query<SseQuery>,
) -> Response {
    let request = match query.cf_connect.as_deref().map(str::as_bytes) {
        Some(json) => push::parse_connect(json).map_err(|_| StatusCode::BAD_REQUEST),
        None => Ok(ConnectRequest::default()),
    };
    respond(gw, &headers, request, peer(remote), Transport::UniSse).await
}

/// `POST /connection/uni_sse` with the connect request as the body.
pub async fn sse_post(
    State(gw): State<Arc<Gateway>>,
    remote: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = read_connect(&gw, body).await;
    respond(gw, &headers, request, peer(remote), Transport::UniSse).await
}

/// `POST /connection/uni_http_stream` with the connect request as the body.
pub async fn stream_post(
    State(gw): State<Arc<Gateway>>,
    remote: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = read_connect(&gw, body).await;
    respond(
        gw,
        &headers,
        request,
        peer(remote),
        Transport::UniHttpStream,
    )
    .await
}

/// `OPTIONS` of `/connection/uni_sse`.
pub async fn sse_preflight(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    cors::preflight_for(&gw, &headers, "GET, POST")
}

/// `OPTIONS` of `/connection/uni_http_stream`.
pub async fn stream_preflight(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    cors::preflight_for(&gw, &headers, "POST")
}

/// The connect request in a body of at most `client.max_message_size` bytes.
async fn read_connect(gw: &Gateway, body: Body) -> Result<ConnectRequest, StatusCode> {
    let bytes = to_bytes(body, gw.config.max_message_size)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    push::parse_connect(&bytes).map_err(|_| StatusCode::BAD_REQUEST)
}

async fn respond(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    request: Result<ConnectRequest, StatusCode>,
    peer: Option<SocketAddr>,
    transport: Transport,
) -> Response {
    let origin = match cors::check(&gw, headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let mut response = match request {
        Err(status) => (status, "invalid connect request").into_response(),
        Ok(request) => match gw.admit() {
            Err(refusal) => refusal.into_response(),
            Ok(slot) => {
                let (framing, content_type, preamble) = match transport {
                    Transport::UniSse => (
                        Framing::EventStream,
                        "text/event-stream; charset=utf-8",
                        // Centrifugo opens the stream with an empty line.
                        &b"\r\n"[..],
                    ),
                    _ => (Framing::Lines, "text/plain; charset=utf-8", &b""[..]),
                };
                let stream = Stream::open(gw, request, peer, slot, transport, framing).await;
                streaming(stream, content_type, preamble)
            }
        },
    };
    cors::allow(&mut response, origin);
    response
}

fn streaming(stream: Stream, content_type: &'static str, preamble: &'static [u8]) -> Response {
    let chunks = futures_util::stream::unfold(Some(stream), next_chunk);
    let body = futures_util::StreamExt::chain(
        futures_util::stream::iter(
            (!preamble.is_empty()).then(|| Ok(Bytes::from_static(preamble))),
        ),
        chunks,
    );
    let mut response = Body::from_stream(body).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    out.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    out.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The next chunk of the body; `None` after the last.
async fn next_chunk(stream: Option<Stream>) -> Option<(Result<Bytes, Infallible>, Option<Stream>)> {
    let mut stream = stream?;
    loop {
        match stream.take().await {
            Taken::Write(chunk) => return Some((Ok(chunk), Some(stream))),
            Taken::End(chunk, _) => return Some((Ok(chunk), None)),
            Taken::Nothing => stream.wait().await,
        }
    }
}
