//! Live measurement: counters shared by all tasks, sharded latency histograms and percentile
//! extraction. Nothing here does IO; loss accounting is in `ledger`, the summary in `summary`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms hold, in microseconds (values above are clamped).
const MAX_LATENCY_US: u64 = 120_000_000;

/// New empty latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Current wall clock in microseconds since the Unix epoch (the timestamp carried in payloads).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Counters shared by every task of a run, read once a second by the progress monitor.
pub struct Live {
    /// Connections currently established.
    pub connected: AtomicU64,
    /// Completed connection handshakes since the start (churn counts every cycle).
    pub connects: AtomicU64,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Established connections that the server closed or that failed while running.
    pub disconnects: AtomicU64,
    /// Publications accepted by the server.
    pub published: AtomicU64,
    /// Publications that failed (HTTP error, error reply, timeout).
    pub publish_errors: AtomicU64,
    /// Scheduled publications not sent because the in-flight bound was reached.
    pub publish_skipped: AtomicU64,
    /// First receipt of a publication by a subscriber.
    pub delivered: AtomicU64,
    /// Repeated receipt of a publication by the same subscriber.
    pub duplicates: AtomicU64,
    /// Publications received by a subscriber they were not addressed to (or garbage sequence).
    pub misrouted: AtomicU64,
    /// Text messages received that held something (publications, pings).
    pub frames: AtomicU64,
    /// Socket reads that yielded at least one such message.
    pub reads: AtomicU64,
    /// Payload timestamps below this are not recorded in the latency histogram (warmup).
    pub measure_from_us: AtomicU64,
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Live {
    /// Fresh counters with `shards` latency histograms to spread lock contention.
    pub fn new(shards: usize) -> Self {
        Live {
            connected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            publish_skipped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            measure_from_us: AtomicU64::new(0),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds one to a counter.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one delivery latency (send timestamp `sent_us` in payload) into shard `shard`.
    pub fn record_latency(&self, shard: usize, sent_us: u64, now_us: u64) {
        if sent_us < self.measure_from_us.load(Ordering::Relaxed) {
            return;
        }
        let us = now_us.saturating_sub(sent_us).clamp(1, MAX_LATENCY_US);
        let mut h = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    /// Merges and resets the shards: the latencies recorded since the last call.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for shard in &self.shards {
            let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.add(&*h).expect("histograms share bounds");
            h.reset();
        }
        out
    }
}

/// Latency percentiles in milliseconds; all `None` when nothing was recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Extracts percentiles from a histogram in microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| Some(us as f64 / 1000.0);
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_ms() {
        let mut h = new_histogram();
        assert_eq!(Percentiles::from_histogram(&h), Percentiles::default());
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert!((p.p50.unwrap() - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p90.unwrap() - 9.0).abs() < 0.01, "{p:?}");
        assert!((p.p99.unwrap() - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.p999.unwrap() - 9.99).abs() < 0.01, "{p:?}");
        assert!((p.max.unwrap() - 10.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn warmup_latencies_are_skipped_and_intervals_reset() {
        let live = Live::new(4);
        live.measure_from_us.store(1_000, Ordering::Relaxed);
        live.record_latency(0, 500, 2_000);
        live.record_latency(5, 1_500, 2_000);
        let h = live.take_interval();
        assert_eq!((h.len(), h.max()), (1, 500));
        assert!(live.take_interval().is_empty());
    }
}
