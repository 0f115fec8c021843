//! The rows of the scale-out tables (`run-fleet.sh`: scenarios `fleet` and `fleet-cluster`;
//! `run-storm.sh`: scenario `storm`): deliveries and loss, Herald's own publish-to-write
//! latency beside the clients', memory per connection, the load processes' and Redis's CPU, and
//! for the storm how fast the clients of the killed node were back. Layout is `report`'s.

use super::figures::Row;
use crate::summary::Summary;

/// Whether `scenario` is one of the scale-out runs.
pub fn is_scale(scenario: &str) -> bool {
    matches!(scenario, "fleet" | "fleet-cluster" | "storm")
}

/// The rows of a scale-out table.
pub fn rows(scenario: &str) -> Vec<Row> {
    let mut r = vec![
        Row("connections", |s| Some(s.connections as f64), 0),
        Row(
            "gateways scraped",
            |s| s.herald_publish_to_write.as_ref().map(|h| h.nodes as f64),
            0,
        ),
        Row(
            "publications/s accepted",
            |s| Some(s.publish.achieved_rate),
            1,
        ),
        Row("deliveries/s", |s| Some(s.deliveries_per_sec), 0),
        Row("lost", |s| Some(s.lost as f64), 0),
        Row("duplicates", |s| Some(s.duplicates as f64), 0),
        Row("client-observed latency p50 (ms)", |s| s.latency_ms.p50, 2),
        Row("client-observed latency p99 (ms)", |s| s.latency_ms.p99, 2),
        Row(
            "Herald publish-to-write p50 (ms)",
            |s| pw(s).and_then(|h| h.p50_ms),
            2,
        ),
        Row(
            "Herald publish-to-write p99 (ms)",
            |s| pw(s).and_then(|h| h.p99_ms),
            2,
        ),
    ];
    if scenario == "storm" {
        r.extend([
            Row(
                "clients reconnected",
                |s| s.storm.as_ref().map(|t| t.clients as f64),
                0,
            ),
            Row(
                "99% back and recovered after (s)",
                |s| s.storm.as_ref().map(|t| t.back_99_s),
                2,
            ),
            Row(
                "100% back and recovered after (s)",
                |s| s.storm.as_ref().map(|t| t.back_100_s),
                2,
            ),
            Row(
                "not recovered",
                |s| s.storm.as_ref().map(|t| t.unrecovered as f64),
                0,
            ),
            Row(
                "Redis commands per reconnected client",
                |s| s.redis.as_ref()?.commands_per_reconnect,
                1,
            ),
            Row(
                "disconnects (all clients)",
                |s| Some(s.disconnects as f64),
                0,
            ),
        ]);
    } else {
        r.extend([
            Row(
                "gateway RSS / connection (bytes)",
                |s| s.server.rss_bytes_per_connection,
                0,
            ),
            Row("gateway CPU (s)", |s| s.server.cpu_seconds, 2),
            Row("gateway CPU µs / delivery", |s| s.cpu_us_per_delivery, 3),
        ]);
    }
    r.extend([
        Row("Redis CPU (s)", |s| s.redis.as_ref().map(|r| r.cpu_s), 2),
        Row("publisher nodes' CPU (s)", |s| s.publisher_cpu_s, 2),
        Row(
            "Redis commands",
            |s| s.redis.as_ref().map(|r| r.commands as f64),
            0,
        ),
        Row(
            "load processes' CPU (s, measured phase)",
            |s| Some(loadgen_cpu(s)),
            1,
        ),
        Row("load processes' CPU share (cores)", loadgen_cores, 2),
        Row(
            "load processes' CPU µs / delivery",
            |s| (s.delivered > 0).then(|| loadgen_cpu(s) * 1e6 / s.delivered as f64),
            3,
        ),
        Row("host load average at start", |s| s.host_load[0], 2),
    ]);
    r
}

fn pw(s: &Summary) -> Option<&crate::scrape::ServerLatency> {
    s.herald_publish_to_write.as_ref()
}

/// The load processes' CPU over the measured phase (the whole run for summaries older than
/// that figure).
pub(super) fn loadgen_cpu(s: &Summary) -> f64 {
    s.loadgen
        .measured_cpu_seconds
        .unwrap_or(s.loadgen.cpu_seconds)
}

/// The load processes' CPU over the run's wall time: the cores they took from the machine.
fn loadgen_cores(s: &Summary) -> Option<f64> {
    (s.duration_s > 0.0).then(|| loadgen_cpu(s) / s.duration_s)
}
