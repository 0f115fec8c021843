//! The HTTP client that carries OTLP exports: the blocking client of the
//! `reqwest` Herald already links. The SDK's batch processor exports from its
//! own thread, outside the async runtime, so a blocking client suits it.

use std::io::Read;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// The longest response body read from a collector.
const MAX_RESPONSE: u64 = 1 << 20;

/// An OTLP/HTTP client.
#[derive(Debug)]
pub struct Client(reqwest::blocking::Client);

impl Client {
    /// A client with the timeout of `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds, default 10 s). Build it
    /// outside the async runtime.
    pub fn from_env() -> anyhow::Result<Client> {
        let timeout = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()?;
        Ok(Client(client))
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (head, body) = request.into_parts();
        let mut response = self
            .0
            .request(head.method, head.uri.to_string())
            .headers(head.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut bytes = Vec::new();
        response.take(MAX_RESPONSE).read_to_end(&mut bytes)?;
        let mut out = Response::builder()
            .status(status)
            .body(Bytes::from(bytes))?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
