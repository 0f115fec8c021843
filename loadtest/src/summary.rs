//! The JSON summary of a run: the fixed fields every consumer relies on (`scenario` … `server`)
//! followed by extras. Also read back by `report` and `merge`, so every extra has a default.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::monitor::Point;
use crate::reconnect;
use crate::redis_info::RedisFigures;
use crate::scrape::ServerLatency;
use crate::stats::Percentiles;

/// Summary of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Target name (`floor` for the floor scenario).
    pub target: String,
    /// Connections established (churn: concurrent workers).
    pub connections: u64,
    /// Measured phase in seconds (publishing, idle hold or churn).
    pub duration_s: f64,
    /// Publications the server accepted.
    pub published: u64,
    /// Receipts the subscribers should have seen.
    pub expected_deliveries: u64,
    /// Distinct receipts.
    pub delivered: u64,
    /// Expected receipts that never arrived.
    pub lost: u64,
    /// Repeated receipts.
    pub duplicates: u64,
    /// Deliveries per second of the measured phase.
    pub deliveries_per_sec: f64,
    /// Completed handshakes per second (connect phase, or churn loop).
    pub connects_per_sec: f64,
    /// Publish-to-receive latency.
    pub latency_ms: Percentiles,
    /// Server processes (all `None` without `--server-pid`).
    pub server: Server,

    /// Server CPU microseconds per delivery (measured phase).
    pub cpu_us_per_delivery: Option<f64>,
    /// Server user CPU microseconds per delivery.
    pub user_cpu_us_per_delivery: Option<f64>,
    /// Server system CPU microseconds per delivery.
    pub system_cpu_us_per_delivery: Option<f64>,
    /// Server CPU microseconds per completed connection handshake.
    pub cpu_us_per_connect: Option<f64>,
    /// Floor: CPU microseconds of the floor process per connection of the bare connect/accept
    /// storm, i.e. the accepting end only (accept and close; the connecting end is the load
    /// generator and not counted).
    pub cpu_us_per_accept: Option<f64>,
    /// Floor: CPU microseconds of the load generator per connection of the same storm, i.e. the
    /// connecting end (a tokio client: connect, wait for the acceptor's close, close).
    pub loadgen_cpu_us_per_connect: Option<f64>,
    /// Floor: CPU microseconds per bare TCP connection counting both ends (connect, accept and
    /// close on each side, blocking calls, no event loop), from `connect_accept`.
    pub cpu_us_per_connect_accept: Option<f64>,
    /// Floor: the loop behind `cpu_us_per_connect_accept`.
    pub connect_accept: Option<ConnectAccept>,
    /// Client transport: `ws` (WebSocket) or `sse` (Server-Sent Events); empty for the floor
    /// and in summaries older than the SSE client.
    pub transport: String,
    /// Protocol format over WebSocket: `json` or `protobuf` (`--format`); empty for the floor
    /// and in summaries older than the Protobuf client, which were JSON.
    pub format: String,
    /// Connections asked for.
    pub connections_requested: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Connections ended by the server or the network during the run.
    pub disconnects: u64,
    /// Publications received by a subscriber they were not addressed to.
    pub misrouted: u64,
    /// How deliveries arrived: messages per WebSocket frame and per socket read, which shows
    /// how much the server coalesces writes.
    pub receive: Receive,
    /// Handshake latency (TCP + WebSocket + protocol connect and subscribe).
    pub connect_latency_ms: Percentiles,
    /// Publisher figures.
    pub publish: PublishStats,
    /// The load generator's own cost.
    pub loadgen: Loadgen,
    /// One-minute load average of the machine at the start and at the end of the run: a busy
    /// machine makes every figure worse.
    pub host_load: [Option<f64>; 2],
    /// First few errors seen (connects, publishes, disconnects).
    pub errors: Vec<String>,
    /// Command line that produced this summary.
    pub command: Vec<String>,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// Once-a-second samples.
    pub timeline: Vec<Point>,
    /// The whole publish-to-receive latency histogram in microseconds (`--save-histogram`):
    /// HdrHistogram's V2 deflate serialization in base64, for `merge` to pool exactly.
    pub latency_histogram: Option<String>,
    /// Load processes merged into this summary by `merge` (0: a single process).
    pub merged_parts: u64,
    /// Merged summaries: whether the latency percentiles are those of the pooled histograms
    /// (otherwise each is the largest of the parts').
    pub latency_pooled: bool,

    // `--reconnect` only: absent from the summaries of other runs.
    /// Connections reopened (and the topic subscribed again) after the server closed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
    /// Reconnects whose subscribe reply recovered every publication missed meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<u64>,
    /// Reconnects told `recovered: false` (the history no longer reached back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecovered: Option<u64>,
    /// Publications received inside subscribe replies (counted in `delivered` too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_publications: Option<u64>,
    /// Reconnect attempts that failed and were retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_failures: Option<u64>,
    /// First receipts that came after a later publication of the stream (by channel offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    /// Every reconnect: when the connection was found closed and when the topic was subscribed
    /// again (Unix milliseconds), the close code, attempts and whether it recovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_events: Option<Vec<reconnect::Event>>,
    /// Reconnecting runs: how fast the closed clients were back (see `Storm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<Storm>,

    // Figures `merge` adds from the scripts' samples of Redis and of the gateways' metrics.
    /// Redis CPU and commands during the run (`INFO` before and after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisFigures>,
    /// Herald's own publish-to-write latency during the run, from the gateways' histograms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub herald_publish_to_write: Option<ServerLatency>,
    /// CPU seconds of the publisher nodes during the run (`/proc` before and after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_cpu_s: Option<f64>,
}

/// How fast the clients of a closed node were back, from the reconnect events: times from the
/// first close seen to the moment 99% and all of the reconnected clients had their topic
/// subscribed again (and what they missed recovered, or said lost: `unrecovered`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storm {
    /// Clients that reconnected.
    pub clients: u64,
    /// First close seen, milliseconds since the Unix epoch.
    pub first_close_ms: u64,
    /// Seconds from the first close until 99% of them were back.
    pub back_99_s: f64,
    /// Seconds from the first close until all of them were back.
    pub back_100_s: f64,
    /// Reconnects whose subscribe reply could not recover what was missed.
    pub unrecovered: u64,
    /// Connection attempts that failed and were retried.
    pub failed_attempts: u64,
}

/// Server figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    /// Resident memory: after connecting and settling (idle), else at the end of the run.
    pub rss_bytes: Option<u64>,
    /// RSS growth from before connecting to after settling, per connection.
    pub rss_bytes_per_connection: Option<f64>,
    /// CPU seconds of the measured phase (user + system).
    pub cpu_seconds: Option<f64>,
    /// User CPU seconds of the measured phase.
    pub user_cpu_seconds: Option<f64>,
    /// System CPU seconds of the measured phase.
    pub system_cpu_seconds: Option<f64>,
    /// RSS before the first connection.
    pub baseline_rss_bytes: Option<u64>,
    /// Largest RSS sampled.
    pub peak_rss_bytes: Option<u64>,
    /// CPU seconds of the connect phase.
    pub connect_cpu_seconds: Option<f64>,
    /// Sampled process ids.
    pub pids: Vec<u32>,
}

/// Receive-side batching.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Receive {
    /// Text messages received.
    pub frames: u64,
    /// Socket reads that yielded messages.
    pub reads: u64,
    /// Deliveries per text message.
    pub deliveries_per_frame: Option<f64>,
    /// Deliveries per socket read.
    pub deliveries_per_read: Option<f64>,
}

impl Receive {
    /// Ratios of `delivered` to the frame and read counts.
    pub fn new(delivered: u64, frames: u64, reads: u64) -> Self {
        let ratio = |d: u64| (d > 0).then(|| delivered as f64 / d as f64);
        Receive {
            frames,
            reads,
            deliveries_per_frame: ratio(frames),
            deliveries_per_read: ratio(reads),
        }
    }
}

/// Publisher figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishStats {
    /// Publications per second asked for.
    pub target_rate: f64,
    /// Publications accepted per second.
    pub achieved_rate: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Scheduled publications skipped because too many requests were in flight.
    pub skipped: u64,
    /// Whether at least 99% of the scheduled publications were accepted.
    pub rate_met: bool,
    /// The first failed request's error (status and URL, or what failed on the way).
    pub first_error: Option<String>,
}

/// The floor's connect-to-self loop: bare TCP connections with both ends in one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectAccept {
    /// Connections made (each connected, accepted and closed on both ends).
    pub connections: u64,
    /// Threads running the loop.
    pub threads: u64,
    /// Length of the loop in seconds.
    pub wall_s: f64,
    /// Connections per second.
    pub per_sec: f64,
    /// User CPU seconds of the process over the loop.
    pub user_cpu_seconds: f64,
    /// System CPU seconds of the process over the loop.
    pub system_cpu_seconds: f64,
    /// CPU microseconds per connection, both ends.
    pub cpu_us_per_connect_accept: Option<f64>,
}

impl ConnectAccept {
    /// Figures of a loop that made `connections` connections in `wall_s` seconds on `threads`
    /// threads, using that much user and system CPU.
    pub fn new(connections: u64, threads: u64, wall_s: f64, user_s: f64, system_s: f64) -> Self {
        ConnectAccept {
            connections,
            threads,
            wall_s,
            per_sec: if wall_s > 0.0 {
                connections as f64 / wall_s
            } else {
                0.0
            },
            user_cpu_seconds: user_s,
            system_cpu_seconds: system_s,
            cpu_us_per_connect_accept: us_per(Some(user_s + system_s), connections),
        }
    }
}

/// The load generator's own resource use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Loadgen {
    /// CPU seconds over the whole run, connecting included.
    pub cpu_seconds: f64,
    /// CPU seconds over the measured phase only (the window of the server's CPU figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_cpu_seconds: Option<f64>,
    /// Resident memory at the end.
    pub rss_bytes: u64,
}

impl Loadgen {
    /// The load generator's use from `start` to `end`, and from `measured` (the start of the
    /// measured phase) to `end`.
    pub fn between(
        start: &crate::procstat::ProcSample,
        measured: &crate::procstat::ProcSample,
        end: &crate::procstat::ProcSample,
    ) -> Loadgen {
        Loadgen {
            cpu_seconds: end.cpu_since(start).total_s(),
            measured_cpu_seconds: Some(end.cpu_since(measured).total_s()),
            rss_bytes: end.rss_bytes,
        }
    }
}

impl Summary {
    /// Writes the summary as pretty JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Reads a summary.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
}

/// A latency histogram as summary text: V2 deflate serialization, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serialize histogram: {e:?}"))?;
    Ok(BASE64.encode(&bytes))
}

/// The histogram of [`encode_histogram`] text.
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = BASE64.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .context("deserialize histogram")
}

/// Path of a file written next to the summary: `result.json` + `throughput` → `result.throughput.svg`.
pub fn sibling(out: &Path, name: &str) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("result");
    out.with_file_name(format!("{stem}.{name}.svg"))
}

/// `part / whole` in microseconds per unit, `None` when either side is missing or zero.
pub fn us_per(seconds: Option<f64>, count: u64) -> Option<f64> {
    seconds
        .filter(|_| count > 0)
        .map(|s| s * 1e6 / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn summary_has_the_documented_shape() {
        let v = serde_json::to_value(Summary::default()).unwrap();
        for key in [
            "scenario",
            "target",
            "connections",
            "duration_s",
            "published",
            "expected_deliveries",
            "delivered",
            "lost",
            "duplicates",
            "deliveries_per_sec",
            "connects_per_sec",
            "latency_ms",
            "server",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let mut lat: Vec<&str> = v["latency_ms"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        lat.sort_unstable();
        assert_eq!(lat, ["max", "p50", "p90", "p99", "p999"]);
        for key in [
            "rss_bytes",
            "rss_bytes_per_connection",
            "cpu_seconds",
            "user_cpu_seconds",
            "system_cpu_seconds",
        ] {
            assert_eq!(
                v["server"].get(key),
                Some(&Value::Null),
                "server.{key} must be null without a pid"
            );
        }
        assert!(v["cpu_us_per_delivery"].is_null());
        assert!(
            v.get("reconnects").is_none() && v.get("reconnect_events").is_none(),
            "reconnect figures appear only in reconnecting runs"
        );
    }

    #[test]
    fn summary_round_trips_and_tolerates_missing_extras() {
        let s: Summary =
            serde_json::from_str(r#"{"scenario":"idle","target":"ws","connections":5}"#).unwrap();
        assert_eq!((s.scenario.as_str(), s.connections), ("idle", 5));
        let back: Summary = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back.target, "ws");
    }

    #[test]
    fn histograms_survive_the_summary() {
        let mut h = crate::stats::new_histogram();
        for us in [1, 250, 250, 1_000, 7_000_000] {
            h.record(us).unwrap();
        }
        let text = encode_histogram(&h).unwrap();
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back, h);
        assert!(decode_histogram("AAAA").is_err());
    }

    #[test]
    fn connect_accept_figures() {
        let c = ConnectAccept::new(10_000, 2, 2.0, 0.15, 0.3);
        assert_eq!(c.per_sec, 5_000.0);
        assert!((c.cpu_us_per_connect_accept.unwrap() - 45.0).abs() < 1e-9);
        assert_eq!(
            ConnectAccept::new(0, 2, 0.0, 0.0, 0.0).cpu_us_per_connect_accept,
            None
        );
    }

    #[test]
    fn plot_paths_sit_next_to_the_summary() {
        let p = sibling(Path::new("out/herald-broadcast-1.json"), "throughput");
        assert_eq!(p, Path::new("out/herald-broadcast-1.throughput.svg"));
        assert_eq!(us_per(Some(2.0), 4), Some(500_000.0));
        assert_eq!(us_per(Some(2.0), 0), None);
        assert_eq!(us_per(None, 4), None);
    }
}
