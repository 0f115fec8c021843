//! The Redis engine's own metrics (`herald_redis_*`), registered only when
//! the engine runs, every series at zero from the start; and the kinds of
//! failure fred reports, as counted there.

use fred::error::Error as FredError;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
};

use crate::metrics::labels::{GAP_OUTCOMES, REDIS_ERROR_KINDS, REDIS_OPS};

/// Engine metrics beyond the shared `engine_errors` counter. Registered only
/// when the Redis engine runs, every series at zero from the start.
#[derive(Clone)]
pub(super) struct RedisMetrics {
    /// `metrics.engine_errors`.
    errors: IntCounter,
    /// Errors by kind, in the order of [`REDIS_ERROR_KINDS`].
    kinds: [IntCounter; 4],
    /// Redis command latency by operation.
    pub(super) latency: HistogramVec,
    /// Gap checks by outcome (`filled`, `unrecoverable`).
    pub(super) gaps: IntCounterVec,
    /// Pub/sub messages skipped by a lagging reader (each forces a gap check).
    pub(super) lagged: IntCounter,
    /// Reconnects of subscriber connections.
    pub(super) reconnects: IntCounter,
    /// Clients closed with 3010 because a gap could not be filled.
    pub(super) resyncs: IntCounter,
    /// Round trip of the readiness probe (publish to arrival).
    pub(super) probe_rtt: Histogram,
    /// Publications per batch of the publish script (before the split by slot).
    pub(super) publish_batch: Histogram,
    /// `metrics.nodes`.
    pub(super) nodes: IntGauge,
}

/// What kind of failure a fred error is (label `kind` of `herald_redis_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// No answer in time.
    Timeout,
    /// Not connected, or the connection failed under the command.
    Connection,
    /// A script failed (or was busy, or missing).
    Script,
    /// Anything else Redis refused.
    Other,
}

impl ErrorKind {
    pub(super) fn of(e: &FredError) -> ErrorKind {
        use fred::error::ErrorKind as K;
        match e.kind() {
            K::Timeout => ErrorKind::Timeout,
            K::IO | K::Canceled | K::Routing | K::Cluster | K::Tls | K::Backpressure => {
                ErrorKind::Connection
            }
            _ if e.details().to_ascii_lowercase().contains("script") => ErrorKind::Script,
            _ => ErrorKind::Other,
        }
    }
}

impl RedisMetrics {
    pub(super) fn new(metrics: &crate::Metrics) -> RedisMetrics {
        let new = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let by_kind = IntCounterVec::new(
            Opts::new("redis_errors_total", "Failed Redis commands, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let gaps = IntCounterVec::new(
            Opts::new(
                "redis_gap_checks_total",
                "Publication gaps found, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in GAP_OUTCOMES {
            gaps.with_label_values(&[outcome]);
        }
        let latency = HistogramVec::new(
            HistogramOpts::new("redis_command_duration_seconds", "Redis command latency").buckets(
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0, 5.0,
                ],
            ),
            &["op"],
        )
        .expect("valid metric");
        for op in REDIS_OPS {
            latency.with_label_values(&[op]);
        }
        let m = RedisMetrics {
            errors: metrics.engine_errors.clone(),
            kinds: REDIS_ERROR_KINDS.map(|k| by_kind.with_label_values(&[k])),
            latency,
            gaps,
            lagged: new(
                "redis_pubsub_lagged_total",
                "Pub/sub messages skipped by a lagging reader",
            ),
            reconnects: new(
                "redis_pubsub_reconnects_total",
                "Reconnects of pub/sub connections",
            ),
            resyncs: new(
                "redis_resyncs_total",
                "Clients closed with 3010 because a publication gap could not be filled",
            ),
            probe_rtt: Histogram::with_opts(
                HistogramOpts::new(
                    "redis_probe_rtt_seconds",
                    "Readiness probe round trip, publish to arrival",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .expect("valid metric"),
            publish_batch: Histogram::with_opts(
                HistogramOpts::new(
                    "redis_publish_batch_size",
                    "Publications with history in one Redis publish script call",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )
            .expect("valid metric"),
            nodes: metrics.nodes.clone(),
        };
        let r = metrics.registry();
        // A second engine on one registry (tests) keeps its metrics unexported.
        let _ = r.register(Box::new(by_kind));
        let _ = r.register(Box::new(m.latency.clone()));
        let _ = r.register(Box::new(m.gaps.clone()));
        let _ = r.register(Box::new(m.lagged.clone()));
        let _ = r.register(Box::new(m.reconnects.clone()));
        let _ = r.register(Box::new(m.resyncs.clone()));
        let _ = r.register(Box::new(m.probe_rtt.clone()));
        let _ = r.register(Box::new(m.publish_batch.clone()));
        m
    }

    /// Counts a failed command.
    pub(super) fn error(&self, kind: ErrorKind) {
        self.errors.inc();
        self.kinds[kind as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_families_start_at_zero() {
        let metrics = crate::Metrics::new();
        let _redis = RedisMetrics::new(&metrics);
        let text = metrics.render();
        let mut series: Vec<String> = REDIS_ERROR_KINDS
            .iter()
            .map(|k| format!(r#"herald_redis_errors_total{{kind="{k}"}} 0"#))
            .collect();
        series.extend(
            GAP_OUTCOMES
                .iter()
                .map(|o| format!(r#"herald_redis_gap_checks_total{{outcome="{o}"}} 0"#)),
        );
        series.extend(
            [
                "herald_redis_pubsub_lagged_total",
                "herald_redis_pubsub_reconnects_total",
                "herald_redis_resyncs_total",
                "herald_redis_probe_rtt_seconds_count",
                "herald_redis_publish_batch_size_count",
            ]
            .map(|s| format!("{s} 0")),
        );
        for s in series {
            assert!(text.lines().any(|l| l == s), "missing {s}");
        }
        for op in REDIS_OPS {
            let count = format!(r#"herald_redis_command_duration_seconds_count{{op="{op}"}} 0"#);
            assert!(text.lines().any(|l| l == count), "missing {count}");
        }
    }

    #[test]
    fn fred_errors_map_to_kinds() {
        use fred::error::ErrorKind as K;
        let kind = |k, d: &str| ErrorKind::of(&FredError::new(k, d.to_owned()));
        assert_eq!(kind(K::Timeout, "t"), ErrorKind::Timeout);
        assert_eq!(kind(K::IO, "reset"), ErrorKind::Connection);
        assert_eq!(
            kind(K::Unknown, "ERR Error running script"),
            ErrorKind::Script
        );
        assert_eq!(
            kind(K::Unknown, "NOSCRIPT No matching script"),
            ErrorKind::Script
        );
        assert_eq!(kind(K::Unknown, "ERR wrong type"), ErrorKind::Other);
    }
}
