//! Connect/disconnect storm: N workers each open a connection (full handshake, as a client
//! would), close it politely and start over until the duration ends. Measures completed
//! handshakes per second and server CPU per handshake.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::{cpu_between, sample, server_pids, ws_url, Outcome, MAX_ERRORS};
use crate::cli::RunArgs;
use crate::client::{Dialer, Proto};
use crate::monitor;
use crate::procstat;
use crate::stats::{new_histogram, unix_micros, Live, Percentiles};
use crate::summary::{us_per, Loadgen, Server, Summary};

/// Pause after a failed attempt so that a refused connection does not spin a core.
const FAILURE_BACKOFF: Duration = Duration::from_millis(20);

/// Runs the churn scenario.
pub async fn run(args: &RunArgs, sources: Vec<Ipv4Addr>) -> anyhow::Result<Outcome> {
    let started_at = unix_micros() / 1_000_000;
    let self_start = procstat::sample_self();
    let pids = server_pids(args);
    let url = ws_url(args)?;
    let dialer = Arc::new(
        Dialer::new(
            Proto::from(args.target),
            &url,
            sources,
            &args.hmac_secret,
            None,
            false,
        )
        .await?,
    );
    let live = Arc::new(Live::new(1));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let monitor = monitor::spawn(live.clone(), pids.clone());
    let before = sample(&pids)?;
    eprintln!(
        "churning {} workers against {url} for {:?}",
        args.connections, args.duration
    );
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = JoinSet::new();
    for w in 0..args.connections {
        let (dialer, live, errors) = (dialer.clone(), live.clone(), errors.clone());
        workers.spawn(worker(
            dialer,
            w,
            deadline,
            args.connect_timeout,
            live,
            errors,
        ));
    }
    let mut latency = new_histogram();
    while let Some(h) = workers.join_next().await {
        if let Ok(h) = h {
            latency.add(&h).expect("histograms share bounds");
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let after = sample(&pids)?;
    let report = monitor.stop().await;
    let connects = Live::get(&live.connects);
    let cpu = cpu_between(before, after);
    let self_end = procstat::sample_self();
    let mut errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    errors.truncate(MAX_ERRORS);
    let server = Server {
        rss_bytes: after.map(|s| s.rss_bytes),
        rss_bytes_per_connection: None,
        cpu_seconds: cpu.map(|c| c.total_s()),
        user_cpu_seconds: cpu.map(|c| c.user_s),
        system_cpu_seconds: cpu.map(|c| c.system_s),
        baseline_rss_bytes: before.map(|b| b.rss_bytes),
        peak_rss_bytes: report.peak_rss,
        connect_cpu_seconds: cpu.map(|c| c.total_s()),
        pids,
    };
    let summary = Summary {
        scenario: "churn".to_owned(),
        target: args.target.name().to_owned(),
        connections: args.connections as u64,
        duration_s: wall_s,
        deliveries_per_sec: 0.0,
        connects_per_sec: connects as f64 / wall_s.max(1e-9),
        latency_ms: Percentiles::default(),
        cpu_us_per_connect: us_per(server.cpu_seconds, connects),
        server,
        connections_requested: args.connections as u64,
        connect_failures: Live::get(&live.connect_errors),
        connect_latency_ms: Percentiles::from_histogram(&latency),
        loadgen: Loadgen {
            cpu_seconds: self_end.cpu_since(&self_start).total_s(),
            rss_bytes: self_end.rss_bytes,
        },
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
            Ok(Ok(session)) => {
                h.saturating_record(t0.elapsed().as_micros() as u64);
                Live::incr(&live.connects);
                Live::incr(&live.connected);
                session.close().await;
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
