//! CORS for the HTTP transports (SSE, and the emulation endpoints the SDKs
//! POST to with `Content-Type: application/json`): a page on an origin the
//! gateway accepts (see [`Gateway::is_origin_allowed`]) may use them
//! cross-origin, with credentials (a cookie may carry the token). WebSocket needs none of this:
//! browsers do not apply CORS to it, the handshake's Origin check suffices.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Gateway;

/// Longest `Access-Control-Request-Headers` echoed in a preflight answer.
const MAX_REQUEST_HEADERS: usize = 256;

/// A request from an origin the gateway does not accept (answered 403).
#[derive(Debug)]
pub struct ForeignOrigin;

impl IntoResponse for ForeignOrigin {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, "origin not allowed").into_response()
    }
}

/// The request's `Origin` when the gateway accepts it: `Ok(None)` for
/// requests without one (not cross-origin browser requests).
pub fn check(gw: &Gateway, headers: &HeaderMap) -> Result<Option<HeaderValue>, ForeignOrigin> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !gw.is_origin_allowed(text(header::ORIGIN), text(header::HOST)) {
        return Err(ForeignOrigin);
    }
    Ok(headers.get(header::ORIGIN).cloned())
}

/// Marks `response` readable by the page at `origin`.
pub fn allow(response: &mut Response, origin: Option<HeaderValue>) {
    allow_head(response.headers_mut(), origin);
}

/// Marks an answer with `headers` readable by the page at `origin`.
pub fn allow_head(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// `OPTIONS /connection/sse`: the preflight of a cross-origin `EventSource`
/// (or `fetch`) that sends headers such as `Last-Event-ID`.
pub async fn preflight(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    preflight_for(&gw, &headers, "GET")
}

/// `OPTIONS` of `/connection/http_stream` and `/emulation`: the preflight of
/// the SDKs' cross-origin `fetch` POST with `Content-Type: application/json`.
pub async fn preflight_post(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    preflight_for(&gw, &headers, "POST")
}

/// The answer to a preflight of an endpoint that takes `methods`.
pub fn preflight_for(gw: &Gateway, headers: &HeaderMap, methods: &'static str) -> Response {
    let origin = match check(gw, headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    if let Some(requested) = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| is_header_list(v.as_bytes()))
    {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    allow(&mut response, origin);
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers"),
    );
    response
}

/// A short comma-separated list of header names (nothing else is echoed).
fn is_header_list(value: &[u8]) -> bool {
    value.len() <= MAX_REQUEST_HEADERS
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_lists_of_header_names_are_echoed() {
        assert!(is_header_list(b"last-event-id, x-token"));
        assert!(!is_header_list(b"x\r\nset-cookie: a"));
        assert!(!is_header_list(&[b'a'; MAX_REQUEST_HEADERS + 1]));
    }
}
