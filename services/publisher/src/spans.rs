//! The API's spans: one per request (`api.<method>`, continuing the caller's
//! W3C `traceparent`/`tracestate` when it sends them) and one per engine
//! publish (`engine.publish`), whose context the publication carries to the
//! delivering gateways. Disabled, and so free, unless traces are exported.

use axum::http::HeaderMap;
use herald_core::trace::{self, TARGET};
use tracing::{field, Span};

/// The span of one API request; `method` is a known method name or "unknown".
pub(crate) fn request(method: &str, headers: &HeaderMap) -> Span {
    let span = tracing::trace_span!(
        target: TARGET,
        "api",
        otel.name = format_args!("api.{method}"),
        otel.kind = "server",
        otel.status_code = field::Empty,
        error = field::Empty,
    );
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    trace::continue_remote(&span, header("traceparent"), header("tracestate"));
    span
}

/// Marks a request's span failed with the error code it answered.
pub(crate) fn failed(span: &Span, code: u32) {
    span.record("otel.status_code", "error");
    span.record("error", code);
}

/// The span of one publication's engine publish, a child of the current request's.
pub(crate) fn engine_publish(channel: &str) -> Span {
    tracing::trace_span!(
        target: TARGET,
        "engine.publish",
        otel.kind = "producer",
        channel,
    )
}
