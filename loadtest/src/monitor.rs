//! Once-a-second progress: prints a status line, samples the server processes and keeps the
//! timeline that feeds the over-time plots; also merges the latency shards into the run total.
//! It only reads the shared counters; the scenarios decide what a run measures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::procstat::{self, ProcSample};
use crate::stats::{new_histogram, Live, Percentiles};

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Open connections.
    pub connections: u64,
    /// Publications accepted so far.
    pub published: u64,
    /// Deliveries so far.
    pub delivered: u64,
    /// Publications accepted per second over the last interval.
    pub publishes_per_sec: f64,
    /// Deliveries per second over the last interval.
    pub deliveries_per_sec: f64,
    /// Completed handshakes per second over the last interval.
    pub connects_per_sec: f64,
    /// Latency percentiles of the deliveries of the last interval.
    pub latency_ms: Percentiles,
    /// Server resident memory.
    pub server_rss_bytes: Option<u64>,
    /// Server CPU over the last interval, in cores (1.0 = one core busy).
    pub server_cpu_cores: Option<f64>,
}

/// What the monitor hands back when stopped.
pub struct Report {
    /// One point per second.
    pub timeline: Vec<Point>,
    /// Every latency recorded during the run.
    pub latency: Histogram<u64>,
    /// Largest server RSS seen.
    pub peak_rss: Option<u64>,
}

/// Handle of the running monitor.
pub struct Monitor {
    stop: CancellationToken,
    task: JoinHandle<Report>,
}

impl Monitor {
    /// Stops the monitor and returns what it collected, including latencies recorded since
    /// the last tick.
    pub async fn stop(self) -> Report {
        self.stop.cancel();
        self.task.await.unwrap_or_else(|_| Report {
            timeline: Vec::new(),
            latency: new_histogram(),
            peak_rss: None,
        })
    }
}

/// Starts the monitor over `live`, sampling `pids` (none: no server figures).
pub fn spawn(live: Arc<Live>, pids: Vec<u32>) -> Monitor {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(live, pids, stop.clone()));
    Monitor { stop, task }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    published: u64,
    delivered: u64,
    connects: u64,
}

impl Totals {
    fn read(live: &Live) -> Self {
        Totals {
            published: Live::get(&live.published),
            delivered: Live::get(&live.delivered),
            connects: Live::get(&live.connects),
        }
    }
}

async fn run(live: Arc<Live>, pids: Vec<u32>, stop: CancellationToken) -> Report {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut total = new_histogram();
    let mut timeline = Vec::new();
    let mut peak_rss = None;
    let mut last = Totals::default();
    let mut last_t = start;
    let mut last_proc: Option<ProcSample> = sample(&pids);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        let interval = live.take_interval();
        total.add(&interval).expect("histograms share bounds");
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
        let cur = Totals::read(&live);
        let proc_now = sample(&pids);
        let cpu = match (&proc_now, &last_proc) {
            (Some(a), Some(b)) => Some(a.cpu_since(b).total_s() / dt),
            _ => None,
        };
        if let Some(p) = &proc_now {
            peak_rss = peak_rss.max(Some(p.rss_bytes));
        }
        let point = Point {
            t_s: now.duration_since(start).as_secs_f64(),
            connections: Live::get(&live.connected),
            published: cur.published,
            delivered: cur.delivered,
            publishes_per_sec: (cur.published - last.published) as f64 / dt,
            deliveries_per_sec: (cur.delivered - last.delivered) as f64 / dt,
            connects_per_sec: (cur.connects - last.connects) as f64 / dt,
            latency_ms: Percentiles::from_histogram(&interval),
            server_rss_bytes: proc_now.map(|p| p.rss_bytes),
            server_cpu_cores: cpu,
        };
        if !stopping {
            print_line(&point, &Percentiles::from_histogram(&total));
            timeline.push(point);
        }
        (last, last_t, last_proc) = (cur, now, proc_now.or(last_proc));
        if stopping {
            break;
        }
    }
    Report {
        timeline,
        latency: total,
        peak_rss,
    }
}

fn sample(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    procstat::sample(pids).ok()
}

fn print_line(p: &Point, total: &Percentiles) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let server = match (p.server_cpu_cores, p.server_rss_bytes) {
        (Some(c), Some(r)) => format!(" | server {c:.2} cores {:.1} MiB", r as f64 / 1048576.0),
        _ => String::new(),
    };
    eprintln!(
        "[{:>5.0}s] conns {} (+{:.0}/s) | published {} ({:.0}/s) | delivered {} ({:.0}/s) | p99 {} ms (run {} ms){server}",
        p.t_s,
        p.connections,
        p.connects_per_sec,
        p.published,
        p.publishes_per_sec,
        p.delivered,
        p.deliveries_per_sec,
        ms(p.latency_ms.p99),
        ms(total.p99),
    );
}
