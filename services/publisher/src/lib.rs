//! Herald's server API (`POST /api/<method>`, Centrifugo's shapes): backends
//! publish, broadcast and manage users' subscriptions and connections. It
//! authenticates callers by API key and maps domain errors to HTTP; it holds
//! no connections itself (cluster-wide actions go through the engine).

mod methods;
mod spans;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use herald_core::namespace::Namespaces;
use herald_core::protocol::Error;
use herald_core::{Engine, Metrics};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;

/// The `[api]` configuration section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Required in `X-API-Key` or `Authorization: apikey <key>`.
    pub key: Option<String>,
}

/// What the API handlers share.
pub struct Publisher {
    engine: Arc<Engine>,
    namespaces: Namespaces,
    metrics: Metrics,
    key: Option<String>,
}

/// A failed call: an error body, and the HTTP status it travels with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: Error,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            status: StatusCode::OK,
            error,
        }
    }
}

impl ApiError {
    fn status(status: StatusCode, error: Error) -> ApiError {
        ApiError { status, error }
    }

    fn bad_request() -> ApiError {
        ApiError::status(StatusCode::BAD_REQUEST, Error::BadRequest)
    }

    /// Status in "transport error mode", where errors are HTTP statuses.
    fn transport_status(&self) -> StatusCode {
        match self.error {
            _ if self.status != StatusCode::OK => self.status,
            Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Error::UnknownChannel | Error::MethodNotFound => StatusCode::NOT_FOUND,
            Error::UnrecoverablePosition => StatusCode::RANGE_NOT_SATISFIABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl Publisher {
    /// Assembles the API; `key: None` serves without authentication (dev-only mirrors).
    pub fn new(
        engine: Arc<Engine>,
        namespaces: Namespaces,
        metrics: Metrics,
        key: Option<String>,
    ) -> Publisher {
        Publisher {
            engine,
            namespaces,
            metrics,
            key,
        }
    }

    /// The same API without key authentication, for dev-mode mirrors.
    pub fn without_key(&self) -> Publisher {
        Publisher {
            engine: self.engine.clone(),
            namespaces: self.namespaces.clone(),
            metrics: self.metrics.clone(),
            key: None,
        }
    }

    fn is_authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.key else { return true };
        let given = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(apikey_credential)
            });
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes()))
    }

    /// Runs one method on a JSON body.
    pub async fn call(&self, method: &str, body: &str) -> Result<Box<RawValue>, ApiError> {
        let started = std::time::Instant::now();
        let result = self.dispatch(method, body).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.error.code().to_string(),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.api_request(method, &outcome, seconds);
        result
    }
}

/// The method's name for span names: `unknown` for a name no method has.
fn known_method(method: &str) -> &str {
    if methods::find(method).is_some() {
        method
    } else {
        "unknown"
    }
}

/// The key in `Authorization: apikey <key>`; the scheme is case-insensitive
/// and blanks around the key do not count, as in Centrifugo.
fn apikey_credential(value: &str) -> Option<&str> {
    let mut parts = value.split_whitespace();
    let (scheme, key) = (parts.next()?, parts.next()?);
    (scheme.eq_ignore_ascii_case("apikey") && parts.next().is_none()).then_some(key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/api/<method>` with key authentication.
pub fn router(publisher: Arc<Publisher>) -> Router {
    Router::new()
        .route("/api/{method}", post(handle))
        .with_state(publisher)
}

/// Only `/api/publish`, for dev-mode mirrors on the client port.
pub fn publish_router(publisher: Arc<Publisher>) -> Router {
    Router::new()
        .route(
            "/api/publish",
            post(|s, c, h, b| handle(s, Path("publish".to_owned()), c, h, b)),
        )
        .with_state(publisher)
}

async fn handle(
    State(publisher): State<Arc<Publisher>>,
    Path(method): Path<String>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !publisher.is_authorized(&headers) {
        let remote = remote.map(|Extension(ConnectInfo(addr))| addr);
        herald_core::refusals::refused("api key", "http api", &"missing or wrong key", remote);
        return error_response(StatusCode::UNAUTHORIZED, Error::Unauthorized, false);
    }
    let transport_mode = headers
        .get("x-centrifugo-error-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"transport"));
    let Ok(body) = std::str::from_utf8(&body) else {
        return error_response(StatusCode::BAD_REQUEST, Error::BadRequest, transport_mode);
    };
    let body = if body.trim().is_empty() { "{}" } else { body };
    let span = spans::request(known_method(&method), &headers);
    let result = publisher.call(&method, body).instrument(span.clone()).await;
    if let Err(e) = &result {
        spans::failed(&span, e.error.code());
    }
    match result {
        // Centrifugo answers a batch with its `replies` bare, not under `result`.
        Ok(result) if method == "batch" => json_response(StatusCode::OK, &result),
        Ok(result) => json_response(StatusCode::OK, &Envelope::Result(&result)),
        Err(e) if transport_mode => error_response(e.transport_status(), e.error, true),
        Err(e) => error_response(e.status, e.error, false),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Envelope<'a> {
    Result(&'a RawValue),
    Error(Error),
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("responses always serialize");
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn error_response(status: StatusCode, error: Error, bare: bool) -> Response {
    if bare {
        json_response(status, &error)
    } else {
        json_response(status, &Envelope::Error(error))
    }
}

#[cfg(test)]
mod tests {
    use super::apikey_credential;

    #[test]
    fn the_apikey_scheme_is_case_insensitive() {
        assert_eq!(apikey_credential("apikey k1"), Some("k1"));
        assert_eq!(apikey_credential("ApiKey  k1 "), Some("k1"));
        assert_eq!(apikey_credential("APIKEY k1"), Some("k1"));
        assert_eq!(apikey_credential("Bearer k1"), None);
        assert_eq!(apikey_credential("apikey"), None);
        assert_eq!(apikey_credential("apikey k1 k2"), None);
    }
}
