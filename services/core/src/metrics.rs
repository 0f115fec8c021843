//! The Prometheus registry and Herald's metrics, prefixed `herald_`. One
//! `Metrics` is built per process and handed to every component (never global).
//! Every labelled series is created at zero when it is built, from the label
//! vocabularies in [`labels`]; hot paths keep handles resolved once.

pub mod labels;
mod register;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Registry, TextEncoder,
};

use crate::namespace::{self, Namespaces};
use labels::{RecoveryFrom, Source, Transport, API_METHODS, CLIENT_METHODS, EMULATION_OUTCOMES};
use register::{counters, gauges, histograms, reg};
pub use transport::TransportMetrics;

/// Sub-millisecond to seconds: request and command latencies.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The commit Herald was built from (`build.rs`).
const COMMIT: &str = env!("HERALD_COMMIT");

/// The labelled families, before their series are resolved.
struct Families {
    connections: IntGaugeVec,
    connects: IntCounterVec,
    disconnects: IntCounterVec,
    connection_duration: HistogramVec,
    slow_cutoffs: IntCounterVec,
    queue_high_water: HistogramVec,
    deliveries: IntCounterVec,
    frames_written: IntCounterVec,
    bytes_written: IntCounterVec,
    writes: IntCounterVec,
    pushes_per_write: HistogramVec,
    publish_to_write: HistogramVec,
}

/// The series of one channel namespace (label `channel_namespace`).
#[derive(Debug, Clone)]
pub struct NamespaceMetrics {
    /// `herald_subscriptions`: local subscriptions (connection x channel).
    pub subscriptions: IntGauge,
    /// `herald_channels`: channels with local subscribers.
    pub channels: IntGauge,
    api_publications: IntCounter,
    client_publications: IntCounter,
}

/// The series of one command or API method: latency, and its `ok` count.
#[derive(Debug, Clone)]
struct MethodMetrics {
    seconds: Histogram,
    ok: IntCounter,
}

/// Every metric Herald exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    websocket: Arc<TransportMetrics>,
    sse: Arc<TransportMetrics>,
    uni_websocket: Arc<TransportMetrics>,
    uni_sse: Arc<TransportMetrics>,
    uni_http_stream: Arc<TransportMetrics>,
    http_stream: Arc<TransportMetrics>,
    sse_emulation: Arc<TransportMetrics>,
    emulation_requests: IntCounterVec,
    namespaces: Arc<HashMap<String, NamespaceMetrics>>,
    client_commands: IntCounterVec,
    client_methods: Arc<HashMap<&'static str, MethodMetrics>>,
    api_requests: IntCounterVec,
    api_methods: Arc<HashMap<&'static str, MethodMetrics>>,
    recoveries: IntCounterVec,
    refused_connections: IntCounterVec,
    /// Engine publish latency (`herald_publish_duration_seconds`).
    pub publish_seconds: Histogram,
    /// Engine operations that failed (`herald_engine_errors_total`).
    pub engine_errors: IntCounter,
    /// 1 while the engine is usable (`herald_engine_up`).
    pub engine_up: IntGauge,
    /// Nodes this node sees (`herald_nodes`).
    pub nodes: IntGauge,
}

fn methods(
    counts: &IntCounterVec,
    seconds: &HistogramVec,
    names: &[&'static str],
) -> Arc<HashMap<&'static str, MethodMetrics>> {
    let resolve = |m: &'static str| MethodMetrics {
        seconds: seconds.with_label_values(&[m]),
        ok: counts.with_label_values(&[m, "ok"]),
    };
    Arc::new(names.iter().map(|&m| (m, resolve(m))).collect())
}

impl Metrics {
    /// All metrics, with series for the built-in namespaces.
    pub fn new() -> Metrics {
        Metrics::for_namespaces(&Namespaces::default())
    }

    /// All metrics, with series for `namespaces` (and process metrics on Linux).
    pub fn for_namespaces(namespaces: &Namespaces) -> Metrics {
        let r = Registry::new_custom(Some("herald".into()), None).expect("valid prefix");
        let t = &["transport"];
        let f = Families {
            connections: gauges(&r, "connections", "Open client connections", t),
            connects: counters(
                &r,
                "connects_total",
                "Connections that completed connect",
                t,
            ),
            disconnects: counters(
                &r,
                "disconnects_total",
                "Client connections closed, by close code",
                &["transport", "code"],
            ),
            connection_duration: histograms(
                &r,
                "connection_duration_seconds",
                "Lifetime of closed client connections",
                t,
                &[1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0],
            ),
            slow_cutoffs: counters(
                &r,
                "slow_client_cutoffs_total",
                "Connections closed with 3008 because their queue overflowed",
                t,
            ),
            queue_high_water: histograms(
                &r,
                "connection_queue_high_water_frames",
                "Most frames a closed connection's queue held at once",
                t,
                &[
                    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ],
            ),
            deliveries: counters(
                &r,
                "deliveries_total",
                "Publication frames written to client sockets",
                t,
            ),
            frames_written: counters(&r, "frames_written_total", "Frames written to sockets", t),
            bytes_written: counters(&r, "bytes_written_total", "Bytes written to sockets", t),
            writes: counters(&r, "writes_total", "Socket writes of queued frames", t),
            pushes_per_write: histograms(
                &r,
                "pushes_per_write",
                "Frames handed to one socket write",
                t,
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            publish_to_write: histograms(
                &r,
                "publish_to_write_seconds",
                "From a publication's engine time (wall clock, ms) to its frame's socket write",
                t,
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
        };
        let ns = &["channel_namespace"];
        let subscriptions = gauges(&r, "subscriptions", "Local channel subscriptions", ns);
        let channels = gauges(&r, "channels", "Channels with local subscribers", ns);
        let publications = counters(
            &r,
            "publications_total",
            "Publications accepted",
            &["source", "channel_namespace"],
        );
        let namespaces = namespaces
            .names()
            .map(|n| {
                let m = NamespaceMetrics {
                    subscriptions: subscriptions.with_label_values(&[n]),
                    channels: channels.with_label_values(&[n]),
                    api_publications: publications.with_label_values(&["api", n]),
                    client_publications: publications.with_label_values(&["client", n]),
                };
                (n.to_owned(), m)
            })
            .collect();
        let client_commands = counters(
            &r,
            "client_commands_total",
            "Client protocol commands handled, by result (ok or the error code)",
            &["method", "result"],
        );
        let client_seconds = histograms(
            &r,
            "client_command_duration_seconds",
            "Client command handling time",
            &["method"],
            &LATENCY_BUCKETS,
        );
        let api_requests = counters(
            &r,
            "api_requests_total",
            "Server API requests, by result (ok or the error code)",
            &["method", "result"],
        );
        let api_seconds = histograms(
            &r,
            "api_request_duration_seconds",
            "Server API request handling time",
            &["method"],
            &LATENCY_BUCKETS,
        );
        let recoveries = counters(
            &r,
            "recoveries_total",
            "Subscriptions that asked to recover missed publications",
            &["outcome", "from"],
        );
        for outcome in ["recovered", "not_recovered"] {
            for from in ["memory", "redis"] {
                recoveries.with_label_values(&[outcome, from]);
            }
        }
        let refused_connections = counters(
            &r,
            "connections_refused_total",
            "New client connections refused by the node's cap (full) or connect rate (rate)",
            &["reason"],
        );
        for reason in ["full", "rate"] {
            refused_connections.with_label_values(&[reason]);
        }
        let emulation_requests = counters(
            &r,
            "emulation_requests_total",
            "Requests to /emulation, by what became of them (local, forwarded to another node, received from one, dropped)",
            &["outcome"],
        );
        for outcome in EMULATION_OUTCOMES {
            emulation_requests.with_label_values(&[outcome]);
        }
        let build = gauges(
            &r,
            "build_info",
            "Herald's version and commit",
            &["version", "commit"],
        );
        build.with_label_values(&[crate::VERSION, COMMIT]).set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        Metrics {
            websocket: Arc::new(TransportMetrics::new(&f, Transport::WebSocket)),
            sse: Arc::new(TransportMetrics::new(&f, Transport::Sse)),
            uni_websocket: Arc::new(TransportMetrics::new(&f, Transport::UniWebSocket)),
            uni_sse: Arc::new(TransportMetrics::new(&f, Transport::UniSse)),
            uni_http_stream: Arc::new(TransportMetrics::new(&f, Transport::UniHttpStream)),
            http_stream: Arc::new(TransportMetrics::new(&f, Transport::HttpStream)),
            sse_emulation: Arc::new(TransportMetrics::new(&f, Transport::SseEmulation)),
            emulation_requests,
            namespaces: Arc::new(namespaces),
            client_methods: methods(&client_commands, &client_seconds, &CLIENT_METHODS),
            client_commands,
            api_methods: methods(&api_requests, &api_seconds, &API_METHODS),
            api_requests,
            recoveries,
            refused_connections,
            publish_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("publish_duration_seconds", "Engine publish latency")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            engine_errors: reg(
                &r,
                IntCounter::new("engine_errors_total", "Failed engine operations")
                    .expect("valid metric"),
            ),
            engine_up: reg(
                &r,
                IntGauge::new("engine_up", "1 while the engine is usable, else 0")
                    .expect("valid metric"),
            ),
            nodes: reg(
                &r,
                IntGauge::new("nodes", "Nodes this node sees").expect("valid metric"),
            ),
            registry: r,
        }
    }

    /// The series of one transport.
    pub fn transport(&self, transport: Transport) -> &TransportMetrics {
        match transport {
            Transport::WebSocket => &self.websocket,
            Transport::Sse => &self.sse,
            Transport::UniWebSocket => &self.uni_websocket,
            Transport::UniSse => &self.uni_sse,
            Transport::UniHttpStream => &self.uni_http_stream,
            Transport::HttpStream => &self.http_stream,
            Transport::SseEmulation => &self.sse_emulation,
        }
    }

    /// Counts an `/emulation` request by its outcome (one of [`EMULATION_OUTCOMES`]).
    pub fn emulation_request(&self, outcome: &'static str) {
        self.emulation_requests.with_label_values(&[outcome]).inc();
    }

    /// The series of a channel's namespace (the part before `:`, `default` without one).
    pub fn namespace(&self, channel: &str) -> &NamespaceMetrics {
        let name = channel
            .split_once(':')
            .map_or(namespace::DEFAULT, |(ns, _)| ns);
        self.namespaces
            .get(name)
            .or_else(|| self.namespaces.get(namespace::DEFAULT))
            .expect("the default namespace always exists")
    }

    /// Counts an accepted publication into `channel`.
    pub fn published(&self, source: Source, channel: &str) {
        let ns = self.namespace(channel);
        match source {
            Source::Api => ns.api_publications.inc(),
            Source::Client => ns.client_publications.inc(),
        }
    }

    /// Counts a handled client command; `result` is `ok` or the error code.
    pub fn client_command(&self, method: &'static str, result: &str, seconds: f64) {
        record(
            &self.client_commands,
            &self.client_methods,
            method,
            result,
            seconds,
        );
    }

    /// Counts a server API request; an unknown method counts as `unknown`.
    pub fn api_request(&self, method: &str, result: &str, seconds: f64) {
        record(
            &self.api_requests,
            &self.api_methods,
            method,
            result,
            seconds,
        );
    }

    /// Counts a new connection refused (`full` or `rate`).
    pub fn connection_refused(&self, reason: &str) {
        self.refused_connections.with_label_values(&[reason]).inc();
    }

    /// Counts a subscription's recovery attempt.
    pub fn recovery(&self, recovered: bool, from: RecoveryFrom) {
        let outcome = if recovered {
            "recovered"
        } else {
            "not_recovered"
        };
        let from = match from {
            RecoveryFrom::Memory => "memory",
            RecoveryFrom::Redis => "redis",
        };
        self.recoveries.with_label_values(&[outcome, from]).inc();
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

fn record(
    counts: &IntCounterVec,
    methods: &HashMap<&'static str, MethodMetrics>,
    method: &str,
    result: &str,
    seconds: f64,
) {
    let Some((&name, m)) = methods.get_key_value(method) else {
        counts.with_label_values(&["unknown", result]).inc();
        return;
    };
    m.seconds.observe(seconds);
    if result == "ok" {
        m.ok.inc();
    } else {
        counts.with_label_values(&[name, result]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests;
