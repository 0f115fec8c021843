//! Logs and traces of the process. Logs go to stderr through
//! `tracing-subscriber` (plain or JSON). When an OTLP endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! Herald's spans (target [`TARGET`]) are also exported over OTLP/HTTP with
//! protobuf; otherwise no layer, exporter or propagation is set up at all.

mod otlp_http;

use std::io::IsTerminal;

use anyhow::Context;
use herald_core::trace::TARGET;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Either variable turns trace export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The installed logging, and the span exporter when there is one: dropping
/// it exports the spans still queued (call it outside the async runtime).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber; `node` names this process in exported
/// traces (`service.instance.id`). Fails only on an unusable OTLP setting.
pub fn init(node: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colours only for a person at a terminal, never in collected logs.
    let ansi = std::io::stderr().is_terminal();
    if !is_configured() {
        let builder = fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
        return Ok(Telemetry { provider: None });
    }
    let provider = tracer_provider(node)?;
    let logs = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    // Per-layer filters: the log lines stay as they are without these spans,
    // and the exporter sees Herald's spans only.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("herald"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, Level::TRACE));
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

fn is_configured() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The SDK reads the endpoint, headers, `OTEL_TRACES_SAMPLER(_ARG)` (default
/// `parentbased_always_on`) and `OTEL_BSP_*` itself; the resource is built here
/// so that the service name defaults to `herald`.
fn tracer_provider(node: &str) -> anyhow::Result<SdkTracerProvider> {
    let client = otlp_http::Client::from_env().context("OTLP HTTP client")?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(node))
        .with_batch_exporter(exporter)
        .build())
}

/// Herald's defaults, overridden by `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`.
fn resource(node: &str) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_service_name("herald")
        .with_attributes([
            KeyValue::new("service.instance.id", node.to_owned()),
            KeyValue::new("service.version", herald_core::VERSION),
        ])
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
    {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("herald: exporting the last spans failed: {e}");
            }
        }
    }
}
