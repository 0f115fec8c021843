//! The Prometheus registry and Herald's metrics, prefixed `herald_`. One
//! `Metrics` is built per process and handed to every component (never global).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric Herald exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open client connections, by transport.
    pub connections: IntGaugeVec,
    /// Local subscriptions (connection x channel).
    pub subscriptions: IntGauge,
    /// Channels with local subscribers.
    pub channels: IntGauge,
    /// Publications accepted, by source (`api`, `client`).
    pub publications: IntCounterVec,
    /// Frames queued to client connections by fan-out.
    pub deliveries: IntCounter,
    /// Client commands handled, by method.
    pub commands: IntCounterVec,
    /// Connections closed, by close code.
    pub disconnects: IntCounterVec,
    /// Server API requests, by method and outcome (`ok` or the error code).
    pub api_requests: IntCounterVec,
    /// Engine publish latency.
    pub publish_seconds: Histogram,
    /// Engine operations that failed.
    pub engine_errors: IntCounter,
    /// Time from the engine accepting a publication to this node queueing it to sockets.
    pub delivery_lag_seconds: Histogram,
}

impl Metrics {
    /// Builds and registers all metrics (and process metrics on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("herald".into()), None).expect("valid prefix");
        let m = Metrics {
            connections: IntGaugeVec::new(
                Opts::new("connections", "Open client connections"),
                &["transport"],
            )
            .expect("valid metric"),
            subscriptions: IntGauge::new("subscriptions", "Local channel subscriptions")
                .expect("valid metric"),
            channels: IntGauge::new("channels", "Channels with local subscribers")
                .expect("valid metric"),
            publications: IntCounterVec::new(
                Opts::new("publications_total", "Publications accepted"),
                &["source"],
            )
            .expect("valid metric"),
            deliveries: IntCounter::new("deliveries_total", "Frames queued to client connections")
                .expect("valid metric"),
            commands: IntCounterVec::new(
                Opts::new("client_commands_total", "Client protocol commands handled"),
                &["method"],
            )
            .expect("valid metric"),
            disconnects: IntCounterVec::new(
                Opts::new("disconnects_total", "Client connections closed, by code"),
                &["code"],
            )
            .expect("valid metric"),
            api_requests: IntCounterVec::new(
                Opts::new("api_requests_total", "Server API requests"),
                &["method", "result"],
            )
            .expect("valid metric"),
            publish_seconds: Histogram::with_opts(
                HistogramOpts::new("publish_duration_seconds", "Engine publish latency").buckets(
                    vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0,
                    ],
                ),
            )
            .expect("valid metric"),
            delivery_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "delivery_lag_seconds",
                    "Publish-to-fan-out latency (publication time to local queueing)",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
            )
            .expect("valid metric"),
            engine_errors: IntCounter::new("engine_errors_total", "Failed engine operations")
                .expect("valid metric"),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.connections.clone())).expect("unique");
        r.register(Box::new(m.subscriptions.clone()))
            .expect("unique");
        r.register(Box::new(m.channels.clone())).expect("unique");
        r.register(Box::new(m.publications.clone()))
            .expect("unique");
        r.register(Box::new(m.deliveries.clone())).expect("unique");
        r.register(Box::new(m.commands.clone())).expect("unique");
        r.register(Box::new(m.disconnects.clone())).expect("unique");
        r.register(Box::new(m.api_requests.clone()))
            .expect("unique");
        r.register(Box::new(m.publish_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.delivery_lag_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.engine_errors.clone()))
            .expect("unique");
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique");
        m
    }

    /// The registry, for components that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let m = Metrics::new();
        m.publications.with_label_values(&["api"]).inc();
        let text = m.render();
        assert!(text.contains("herald_publications_total{source=\"api\"} 1"));
        assert!(text.contains("herald_deliveries_total 0"));
    }
}
