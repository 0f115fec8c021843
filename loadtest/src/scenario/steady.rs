//! The steady scenarios (idle, broadcast, personal, floor) end to end: server baseline, connect
//! phase, settle, measured phase, drain, accounting and the summary. Clients, publishing,
//! delivery accounting and sampling are in their own modules.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio_util::sync::CancellationToken;

use super::churn::bare_connect_storm;
use super::measure::{cpu_between, sample, server_pids, Outcome, MAX_ERRORS};
use super::target::endpoint;
use crate::cli::{RunArgs, Scenario};
use crate::client::{Dialer, Proto, Topic};
use crate::fleet::{self, FleetCtx};
use crate::floor::FloorServer;
use crate::ledger::{self, Routing, SeqSet};
use crate::mix::Mix;
use crate::monitor;
use crate::procstat;
use crate::publish::{self, Channels, Plan, Sink};
use crate::reconnect::Backoff;
use crate::stats::{unix_micros, Live, Percentiles};
use crate::summary::{encode_histogram, us_per, Loadgen, PublishStats, Receive, Server, Summary};

/// Latency shards: enough to keep lock contention negligible on small machines.
const LATENCY_SHARDS: usize = 64;

/// Runs a steady scenario: connect, settle, hold or publish, drain, account.
pub async fn run(
    args: &RunArgs,
    sources: Vec<Ipv4Addr>,
    reconnect: Option<Backoff>,
) -> anyhow::Result<Outcome> {
    let scenario = args.scenario;
    let n = args.connections;
    let started_at = unix_micros() / 1_000_000;
    let self_start = procstat::sample_self();
    let load_start = procstat::loadavg();
    let live = Arc::new(Live::new(LATENCY_SHARDS));

    let mut floor = None;
    let (proto, url, pids) = if scenario == Scenario::Floor {
        let f = FloorServer::spawn(
            n,
            args.floor_writers,
            args.floor_batch,
            args.floor_connect_accept,
        )
        .await?;
        let url = format!("ws://{}/", f.addr);
        let pid = f.pid;
        floor = Some(f);
        (Proto::Raw, url, vec![pid])
    } else {
        let (proto, url) = endpoint(args)?;
        (proto, url, server_pids(args))
    };
    let sink = match scenario {
        Scenario::Broadcast | Scenario::Personal | Scenario::Fleet => {
            let api = args
                .api_url
                .as_deref()
                .ok_or_else(|| anyhow!("--api-url is required"))?;
            Some(Sink::http(
                api,
                &args.api_key,
                args.max_inflight,
                args.publish_batch,
            )?)
        }
        _ => None,
    };
    let mix = Mix::new(
        n as u64,
        args.topics as u64,
        args.topic_rate,
        args.personal_rate,
    );
    let routing = match (scenario, mix) {
        (Scenario::Personal, _) => Routing::Personal { n: n as u64 },
        (Scenario::Fleet, Some(mix)) => Routing::Fleet(mix),
        _ => Routing::Broadcast,
    };
    let topic = match scenario {
        Scenario::Broadcast => Topic::One(args.channel.as_str().into()),
        Scenario::Fleet => Topic::Spread {
            first: args.topic_offset as u64,
            count: args.topics as u64,
            user_offset: args.user_offset,
        },
        _ => Topic::None,
    };
    let expect_personal = matches!(scenario, Scenario::Personal | Scenario::Fleet);
    let rate = publish_rate(args);
    let dialer = Dialer::new(
        proto,
        &url,
        sources.clone(),
        &args.hmac_secret,
        topic,
        expect_personal,
    )
    .await?;

    let baseline = sample(&pids)?;
    let monitor = monitor::spawn(live.clone(), pids.clone());
    let cancel = CancellationToken::new();
    let ctx = Arc::new(FleetCtx {
        dialer,
        live: live.clone(),
        routing,
        user_offset: args.user_offset,
        connect_timeout: args.connect_timeout,
        cancel: cancel.clone(),
        reconnect,
    });
    eprintln!("connecting {n} clients to {url}");
    let fleet = fleet::connect_all(ctx, n, args.connect_rate, args.connect_concurrency).await;
    eprintln!(
        "connected {} of {n} in {:.2}s ({:.0}/s), {} failed",
        fleet.connected,
        fleet.wall.as_secs_f64(),
        fleet.connects_per_sec(),
        fleet.failed
    );
    for e in &fleet.errors {
        eprintln!("  connect error: {e}");
    }
    if fleet.connected == 0 {
        bail!("no connection succeeded");
    }
    if let Some(f) = floor.as_mut() {
        f.ready().await?;
    }
    let after_connect = sample(&pids)?;
    if args.wait_for_go {
        ready_and_wait_for_go().await?;
    }
    tokio::time::sleep(args.settle).await;
    let settled = sample(&pids)?;
    let self_settled = procstat::sample_self();

    let mut errors: Vec<String> = fleet.errors.clone();
    let (mut sent, mut pipe, mut first_publish_error) = (0, None, None);
    let (published, wall) = if scenario == Scenario::Idle {
        eprintln!(
            "holding {} connections for {:?}",
            fleet.connected, args.duration
        );
        tokio::time::sleep(args.duration).await;
        (SeqSet::default(), args.duration)
    } else {
        let sink = match floor.as_mut() {
            Some(f) => Sink::Pipe(f.take_stdin()?),
            None => sink.ok_or_else(|| anyhow!("no publish sink"))?,
        };
        let channels = match (scenario, mix) {
            (Scenario::Personal, _) => Channels::Personal {
                n,
                offset: args.user_offset,
            },
            (Scenario::Fleet, Some(mix)) => Channels::Fleet {
                mix,
                user_offset: args.user_offset,
                topic_offset: args.topic_offset,
            },
            _ => Channels::One(args.channel.clone()),
        };
        let plan = Plan {
            rate,
            duration: args.duration,
            max_inflight: args.max_inflight,
            channels,
        };
        live.measure_from_us.store(
            unix_micros() + args.warmup.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        eprintln!("publishing {rate}/s for {:?}", args.duration);
        let p = publish::run(sink, plan, live.clone()).await?;
        errors.extend(p.errors.iter().map(|e| format!("publish: {e}")));
        first_publish_error = p.errors.first().cloned();
        sent = p.sent;
        pipe = p.pipe;
        // Reconnecting subscribers are still expected to catch up.
        let connected = if args.reconnect {
            fleet.connected as u64
        } else {
            Live::get(&live.connected)
        };
        let expected = routing.expected_count(&p.accepted, connected, n as u64);
        drain(&live, expected, args.drain).await;
        (p.accepted, p.wall)
    };
    let end = sample(&pids)?;
    let mut floor_storm = None;
    if let Some(f) = floor.as_mut() {
        let (frames, writes) = f.done().await?;
        eprintln!("floor process wrote {frames} frames in {writes} writev calls");
        floor_storm = Some(bare_connect_storm(args, &url, sources, &pids).await?);
    }

    let connected = fleet.connected;
    let (connect_wall, connect_latency) = (fleet.wall, fleet.connect_latency.clone());
    let failed = fleet.failed;
    let finished = fleet.finish(&cancel).await;
    let (logs, ended) = (finished.logs, finished.ended);
    errors.extend(
        ended
            .iter()
            .take(MAX_ERRORS)
            .map(|e| format!("subscriber: {e}")),
    );
    drop(pipe);
    let report = monitor.stop().await;
    let mut connect_accept = None;
    if let Some(f) = floor {
        connect_accept = f.finish().await?;
    }
    let acc = ledger::account(routing, &published, &logs);
    if reconnect.is_some() {
        // Where a reconnecting subscriber lost something says which reconnect it was.
        for (i, n, missing) in ledger::losses(routing, &published, &logs, MAX_ERRORS) {
            let user = args.user_offset + i;
            errors.push(format!("subscriber lt-{user} lost {n}: {missing}"));
        }
    }

    let measured = cpu_between(settled, end);
    let connect_cpu = cpu_between(baseline, after_connect);
    let rss_at = if scenario == Scenario::Idle {
        settled
    } else {
        end
    };
    let server = Server {
        rss_bytes: rss_at.map(|s| s.rss_bytes),
        rss_bytes_per_connection: baseline
            .zip(settled)
            .map(|(b, s)| (s.rss_bytes as f64 - b.rss_bytes as f64) / connected as f64),
        cpu_seconds: measured.map(|c| c.total_s()),
        user_cpu_seconds: measured.map(|c| c.user_s),
        system_cpu_seconds: measured.map(|c| c.system_s),
        baseline_rss_bytes: baseline.map(|b| b.rss_bytes),
        peak_rss_bytes: report.peak_rss,
        connect_cpu_seconds: connect_cpu.map(|c| c.total_s()),
        pids,
    };
    let wall_s = wall.as_secs_f64().max(1e-9);
    let self_end = procstat::sample_self();
    errors.truncate(MAX_ERRORS);
    let mut summary = Summary {
        scenario: scenario.name().to_owned(),
        target: if scenario == Scenario::Floor {
            "floor".to_owned()
        } else {
            args.target.name().to_owned()
        },
        connections: connected as u64,
        transport: if scenario == Scenario::Floor {
            String::new()
        } else {
            args.transport.name().to_owned()
        },
        format: if scenario == Scenario::Floor {
            String::new()
        } else {
            args.format.name().to_owned()
        },
        duration_s: wall_s,
        published: published.len(),
        expected_deliveries: acc.expected,
        delivered: acc.delivered,
        lost: acc.lost,
        duplicates: acc.duplicates,
        deliveries_per_sec: acc.delivered as f64 / wall_s,
        connects_per_sec: connected as f64 / connect_wall.as_secs_f64().max(1e-9),
        latency_ms: Percentiles::from_histogram(&report.latency),
        cpu_us_per_delivery: us_per(server.cpu_seconds, acc.delivered),
        user_cpu_us_per_delivery: us_per(server.user_cpu_seconds, acc.delivered),
        system_cpu_us_per_delivery: us_per(server.system_cpu_seconds, acc.delivered),
        cpu_us_per_connect: us_per(server.connect_cpu_seconds, connected as u64),
        server,
        connections_requested: n as u64,
        connect_failures: failed as u64,
        disconnects: Live::get(&live.disconnects),
        misrouted: Live::get(&live.misrouted),
        receive: Receive::new(
            acc.delivered,
            Live::get(&live.frames),
            Live::get(&live.reads),
        ),
        connect_latency_ms: Percentiles::from_histogram(&connect_latency),
        publish: publish_stats(
            args,
            &live,
            (published.len(), sent, first_publish_error),
            wall_s,
            scenario,
        ),
        loadgen: Loadgen::between(&self_start, &self_settled, &self_end),
        host_load: [load_start, procstat::loadavg()],
        errors,
        command: std::env::args().collect(),
        started_at,
        timeline: report.timeline,
        ..Summary::default()
    };
    if let Some(t) = finished.tally {
        summary.reconnects = Some(t.events.len() as u64);
        summary.recovered = Some(t.recovered());
        summary.unrecovered = Some(t.events.len() as u64 - t.recovered());
        summary.recovered_publications = Some(t.recovered_publications);
        summary.reconnect_failures = Some(t.failed_attempts);
        summary.out_of_order = Some(t.out_of_order);
        summary.storm = crate::reconnect::storm(&t.events, t.failed_attempts);
        summary.reconnect_events = Some(t.events);
    }
    if args.save_histogram {
        summary.latency_histogram = Some(encode_histogram(&report.latency)?);
    }
    if let Some(bare) = floor_storm {
        let connects = bare.connects;
        summary.connects_per_sec = connects as f64 / bare.storm.wall.as_secs_f64().max(1e-9);
        summary.server.connect_cpu_seconds = bare.acceptor_cpu.map(|c| c.total_s());
        // The floor's storm measures the accepting end only: not comparable with a server's
        // full handshake under the same name.
        summary.cpu_us_per_connect = None;
        summary.cpu_us_per_accept = us_per(summary.server.connect_cpu_seconds, connects);
        summary.loadgen_cpu_us_per_connect = us_per(Some(bare.loadgen_cpu.total_s()), connects);
        summary.cpu_us_per_connect_accept = connect_accept
            .as_ref()
            .and_then(|c| c.cpu_us_per_connect_accept);
        summary.connect_accept = connect_accept;
        summary.connect_latency_ms = Percentiles::from_histogram(&bare.storm.latency);
        summary
            .errors
            .extend(bare.storm.errors.into_iter().take(MAX_ERRORS));
    }
    Ok(Outcome {
        summary,
        latency: report.latency,
    })
}

/// Says `ready` on stdout and waits for a line on stdin (`--wait-for-go`).
async fn ready_and_wait_for_go() -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    eprintln!("connected; waiting for a line on stdin");
    let wait = tokio::task::spawn_blocking(|| -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
        std::io::stdin().lock().read_line(&mut String::new())
    });
    if wait.await?? == 0 {
        bail!("stdin closed before the go line");
    }
    Ok(())
}

fn publish_stats(
    args: &RunArgs,
    live: &Live,
    (accepted, sent, first_error): (u64, u64, Option<String>),
    wall_s: f64,
    scenario: Scenario,
) -> PublishStats {
    if scenario == Scenario::Idle {
        return PublishStats::default();
    }
    let rate = publish_rate(args);
    let scheduled = rate * wall_s;
    PublishStats {
        target_rate: rate,
        achieved_rate: accepted as f64 / wall_s,
        sent,
        errors: Live::get(&live.publish_errors),
        skipped: Live::get(&live.publish_skipped),
        rate_met: accepted as f64 >= scheduled * 0.99 - 1.0,
        first_error,
    }
}

/// Publications per second of the run: `fleet` has its two rates, the others `--rate`.
fn publish_rate(args: &RunArgs) -> f64 {
    match args.scenario {
        Scenario::Fleet => args.topic_rate + args.personal_rate,
        _ => args.rate,
    }
}

/// Waits until `expected` deliveries arrived, nothing arrived for a second, or `limit` passed.
async fn drain(live: &Live, expected: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut last, mut last_change) = (Live::get(&live.delivered), Instant::now());
    loop {
        tick.tick().await;
        let now = Instant::now();
        let d = Live::get(&live.delivered);
        if d >= expected
            || now >= deadline
            || now.duration_since(last_change) > Duration::from_secs(1)
        {
            break;
        }
        if d != last {
            (last, last_change) = (d, now);
        }
    }
}
