//! Connect/disconnect storm: workers each open a connection (full handshake, as a client would),
//! close it politely and start over until the time is up. Measures completed handshakes per
//! second and server CPU per handshake. `storm` also drives the floor's bare connect/accept
//! storm (`bare_connect_storm`).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::measure::{cpu_between, sample, server_pids, Outcome, MAX_ERRORS};
use super::target::endpoint;
use crate::cli::RunArgs;
use crate::client::{Dialer, Proto, Topic};
use crate::monitor;
use crate::procstat::{self, CpuDelta};
use crate::stats::{new_histogram, unix_micros, Live, Percentiles};
use crate::summary::{us_per, Loadgen, Server, Summary};

/// Pause after a failed attempt so that a refused connection does not spin a core.
const FAILURE_BACKOFF: Duration = Duration::from_millis(20);

/// What a storm did.
pub struct Storm {
    /// Handshake latency in microseconds.
    pub latency: Histogram<u64>,
    /// Wall time.
    pub wall: Duration,
    /// First few failures.
    pub errors: Vec<String>,
}

/// Runs `workers` connect/close loops for `duration` (worker w as user `lt-<first_user + w>`);
/// completed handshakes are counted in `live.connects`, failures in `live.connect_errors`.
pub async fn storm(
    dialer: Arc<Dialer>,
    first_user: usize,
    workers: usize,
    duration: Duration,
    connect_timeout: Duration,
    live: Arc<Live>,
) -> Storm {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for w in 0..workers {
        let (dialer, live, errors) = (dialer.clone(), live.clone(), errors.clone());
        set.spawn(worker(
            dialer,
            first_user + w,
            deadline,
            connect_timeout,
            live,
            errors,
        ));
    }
    let mut latency = new_histogram();
    while let Some(h) = set.join_next().await {
        if let Ok(h) = h {
            latency.add(&h).expect("histograms share bounds");
        }
    }
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    Storm {
        latency,
        wall: start.elapsed(),
        errors,
    }
}

/// Runs the churn scenario.
pub async fn run(args: &RunArgs, sources: Vec<Ipv4Addr>) -> anyhow::Result<Outcome> {
    let started_at = unix_micros() / 1_000_000;
    let self_start = procstat::sample_self();
    let load_start = procstat::loadavg();
    let pids = server_pids(args);
    let (proto, url) = endpoint(args)?;
    let dialer =
        Arc::new(Dialer::new(proto, &url, sources, &args.hmac_secret, Topic::None, false).await?);
    let live = Arc::new(Live::new(1));
    let monitor = monitor::spawn(live.clone(), pids.clone());
    let before = sample(&pids)?;
    eprintln!(
        "churning {} workers against {url} for {:?}",
        args.connections, args.duration
    );
    let s = storm(
        dialer,
        args.user_offset,
        args.connections,
        args.duration,
        args.connect_timeout,
        live.clone(),
    )
    .await;
    let after = sample(&pids)?;
    let report = monitor.stop().await;
    let connects = Live::get(&live.connects);
    let cpu = cpu_between(before, after);
    let self_end = procstat::sample_self();
    let wall_s = s.wall.as_secs_f64().max(1e-9);
    let mut errors = s.errors;
    errors.truncate(MAX_ERRORS);
    let server = Server {
        rss_bytes: after.map(|s| s.rss_bytes),
        cpu_seconds: cpu.map(|c| c.total_s()),
        user_cpu_seconds: cpu.map(|c| c.user_s),
        system_cpu_seconds: cpu.map(|c| c.system_s),
        baseline_rss_bytes: before.map(|b| b.rss_bytes),
        peak_rss_bytes: report.peak_rss,
        connect_cpu_seconds: cpu.map(|c| c.total_s()),
        pids,
        ..Server::default()
    };
    let summary = Summary {
        scenario: "churn".to_owned(),
        target: args.target.name().to_owned(),
        connections: args.connections as u64,
        transport: args.transport.name().to_owned(),
        format: args.format.name().to_owned(),
        duration_s: wall_s,
        connects_per_sec: connects as f64 / wall_s,
        cpu_us_per_connect: us_per(server.cpu_seconds, connects),
        server,
        connections_requested: args.connections as u64,
        connect_failures: Live::get(&live.connect_errors),
        connect_latency_ms: Percentiles::from_histogram(&s.latency),
        loadgen: Loadgen::between(&self_start, &self_start, &self_end),
        host_load: [load_start, procstat::loadavg()],
        errors,
        command: std::env::args().collect(),
        started_at,
        timeline: report.timeline,
        ..Summary::default()
    };
    Ok(Outcome {
        summary,
        latency: report.latency,
    })
}

/// What the floor's bare connect/accept/close storm did.
pub struct BareStorm {
    /// The storm itself.
    pub storm: Storm,
    /// Completed connections.
    pub connects: u64,
    /// CPU of the floor process (the accepting end).
    pub acceptor_cpu: Option<CpuDelta>,
    /// CPU of this process (the connecting end) over the storm.
    pub loadgen_cpu: CpuDelta,
}

/// Floor only: connect/accept/close storm against the floor process, which by now closes every
/// new connection right after accepting it.
pub async fn bare_connect_storm(
    args: &RunArgs,
    url: &str,
    sources: Vec<Ipv4Addr>,
    pids: &[u32],
) -> anyhow::Result<BareStorm> {
    let dialer = Arc::new(Dialer::new(Proto::Raw, url, sources, "", Topic::None, false).await?);
    let live = Arc::new(Live::new(1));
    eprintln!(
        "bare connect/accept storm: {} workers for {:?}",
        args.floor_churn_workers, args.floor_churn
    );
    let before = sample(pids)?;
    let self_before = procstat::sample_self();
    let storm = storm(
        dialer,
        0,
        args.floor_churn_workers,
        args.floor_churn,
        args.connect_timeout,
        live.clone(),
    )
    .await;
    let loadgen_cpu = procstat::sample_self().cpu_since(&self_before);
    let acceptor_cpu = cpu_between(before, sample(pids)?);
    Ok(BareStorm {
        storm,
        connects: Live::get(&live.connects),
        acceptor_cpu,
        loadgen_cpu,
    })
}

async fn worker(
    dialer: Arc<Dialer>,
    user: usize,
    deadline: Instant,
    connect_timeout: Duration,
    live: Arc<Live>,
    errors: Arc<Mutex<Vec<String>>>,
) -> Histogram<u64> {
    let mut h = new_histogram();
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let failure = match tokio::time::timeout(connect_timeout, dialer.open(user)).await {
            Ok(Ok(conn)) => {
                h.saturating_record(t0.elapsed().as_micros() as u64);
                Live::incr(&live.connects);
                Live::incr(&live.connected);
                conn.close().await;
                live.connected
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "handshake timed out".to_owned(),
        };
        Live::incr(&live.connect_errors);
        {
            let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
            if errors.len() < MAX_ERRORS {
                errors.push(failure);
            }
        }
        tokio::time::sleep(FAILURE_BACKOFF).await;
    }
    h
}
