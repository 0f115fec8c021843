//! An OTLP/HTTP trace receiver on a free loopback port: accepts
//! `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` and keeps
//! every span it received, flattened, for assertions. Stops on drop.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use tokio::sync::watch;

/// One received span, ids in lowercase hex (an empty parent for a root).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Trace id.
    pub trace_id: String,
    /// Span id.
    pub span_id: String,
    /// Parent span id; empty for a root span.
    pub parent_span_id: String,
    /// The span's W3C `tracestate`.
    pub trace_state: String,
    /// Span name.
    pub name: String,
    /// Span attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// Attributes of the resource (process) that exported it.
    pub resource: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The exporting process's `service.instance.id`.
    pub fn instance(&self) -> &str {
        self.resource
            .get("service.instance.id")
            .map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Received {
    requests: usize,
    spans: Vec<ReceivedSpan>,
}

type Shared = (Mutex<Received>, watch::Sender<usize>);

/// A running receiver.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared: Arc<Shared> = Arc::new((Mutex::default(), watch::channel(0).0));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpReceiver {
            addr,
            shared,
            server,
        })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:port`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.0.lock().expect("poisoned").requests
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.0.lock().expect("poisoned").spans.clone()
    }

    /// Waits until the spans received satisfy `done` (woken by each export,
    /// `within` at most); answers them, or fails with the span tree so far.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut exports = self.shared.1.subscribe();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            let woken = tokio::time::timeout_at(deadline, exports.changed()).await;
            if woken.is_err() {
                bail!(
                    "the expected spans did not arrive within {within:?}; received:\n{}",
                    tree(&spans)
                );
            }
            woken?.context("receiver stopped")?;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(ReceivedSpan {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                trace_state: span.trace_state,
                name: span.name,
                attributes: attributes(&span.attributes),
                resource: resource.clone(),
            });
        }
    }
    let mut received = shared.0.lock().expect("poisoned");
    received.requests += 1;
    received.spans.extend(spans);
    shared.1.send_replace(received.requests);
    StatusCode::OK
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans as an indented tree per trace: name, exporting node, span id.
/// Spans whose parent was not received start at the left margin.
pub fn tree(spans: &[ReceivedSpan]) -> String {
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&ReceivedSpan>> = HashMap::new();
    let mut roots = Vec::new();
    for span in spans {
        if ids.contains(&span.parent_span_id.as_str()) {
            children.entry(&span.parent_span_id).or_default().push(span);
        } else {
            roots.push(span);
        }
    }
    let mut out = String::new();
    let mut stack: Vec<(&ReceivedSpan, usize)> = roots.into_iter().rev().map(|s| (s, 0)).collect();
    while let Some((span, depth)) = stack.pop() {
        let _ = writeln!(
            out,
            "{:indent$}{} [{}] span {} parent {} trace {}",
            "",
            span.name,
            span.instance(),
            span.span_id,
            if span.parent_span_id.is_empty() {
                "-"
            } else {
                &span.parent_span_id
            },
            span.trace_id,
            indent = depth * 2
        );
        for child in children
            .get(span.span_id.as_str())
            .into_iter()
            .flatten()
            .rev()
        {
            stack.push((child, depth + 1));
        }
    }
    out
}
