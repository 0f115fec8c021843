//! `merge`: one summary out of the summaries of load processes that ran side by side, each
//! against its own node of one cluster (`run-multinode.sh`). Counts, rates and the server's CPU
//! and memory are summed (each part sampled its own node). Latency percentiles are those of the
//! pooled histograms when every part embeds one (`--save-histogram`); otherwise each is the
//! largest of the parts', an upper bound, since a quantile of pooled samples never exceeds the
//! largest of the parts' quantiles. Connect latency and the per-second latency of the timeline
//! always take that upper bound. The figures of reconnecting runs and of the floor are combined
//! in `merge::extras`.

mod combine;
mod extras;

use std::path::Path;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use self::combine::{merge_servers, merge_timelines, upper_bound};
use crate::cli::MergeArgs;
use crate::stats::{new_histogram, Percentiles};
use crate::summary::{
    decode_histogram, encode_histogram, us_per, Loadgen, PublishStats, Receive, Summary,
};

/// Errors of each part quoted in the merged summary.
const ERRORS_PER_PART: usize = 5;

/// Reads the parts, writes the merged summary (and its plots when the latency was pooled).
pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    let parts = args
        .parts
        .iter()
        .map(|p| Summary::read(p).with_context(|| format!("read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut summary, latency) = merge(&args.scenario, &parts)?;
    if !args.redis_before.is_empty() {
        let mut redis =
            crate::redis_info::between(&args.redis_before, &args.redis_at_kill, &args.redis_after)?;
        let commands = redis.storm_extra_commands.unwrap_or(redis.commands as f64);
        redis.commands_per_reconnect = summary
            .reconnects
            .filter(|&n| n > 0)
            .map(|n| commands / n as f64);
        summary.redis = Some(redis);
    }
    if !args.metrics_before.is_empty() {
        summary.herald_publish_to_write = Some(crate::scrape::between(
            crate::scrape::PUBLISH_TO_WRITE,
            &args.metrics_before,
            &args.metrics_after,
        )?);
    }
    summary.publisher_cpu_s = args.publisher_cpu_s;
    summary.write(&args.out)?;
    eprintln!("wrote {}", args.out.display());
    match latency {
        Some(h) if !args.no_plots => write_plots(&summary, &h, &args.out),
        None if !args.no_plots => {
            eprintln!("plots not written: not every part embeds its latency histogram")
        }
        _ => {}
    }
    crate::headline::print(&summary);
    Ok(())
}

fn write_plots(summary: &Summary, latency: &Histogram<u64>, out: &Path) {
    match crate::plot::write_all(summary, latency, out) {
        Ok(paths) => paths
            .iter()
            .for_each(|p| eprintln!("wrote {}", p.display())),
        Err(e) => eprintln!("plots not written: {e:#}"),
    }
}

/// Merges `parts` into a summary of scenario `scenario`; also returns the pooled latency
/// histogram when every part has one.
pub fn merge(
    scenario: &str,
    parts: &[Summary],
) -> anyhow::Result<(Summary, Option<Histogram<u64>>)> {
    let Some(first) = parts.first() else {
        bail!("nothing to merge");
    };
    if let Some(odd) = parts.iter().find(|p| {
        (&p.target, &p.transport, &p.format) != (&first.target, &first.transport, &first.format)
    }) {
        bail!(
            "parts of different targets, transports or formats: {} {} {} and {} {} {}",
            first.target,
            first.transport,
            first.format,
            odd.target,
            odd.transport,
            odd.format
        );
    }
    let sum = |f: fn(&Summary) -> u64| parts.iter().map(f).sum::<u64>();
    let sumf = |f: fn(&Summary) -> f64| parts.iter().map(f).sum::<f64>();
    let pooled = pool_latency(parts)?;
    let latency_ms = match &pooled {
        Some(h) => Percentiles::from_histogram(h),
        None => upper_bound(parts.iter().map(|p| &p.latency_ms)),
    };
    let connections = sum(|p| p.connections);
    let delivered = sum(|p| p.delivered);
    let server = merge_servers(parts, connections);
    let mut errors = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        errors.extend(
            p.errors
                .iter()
                .take(ERRORS_PER_PART)
                .map(|e| format!("part {}: {e}", i + 1)),
        );
    }
    let mut summary = Summary {
        scenario: scenario.to_owned(),
        target: first.target.clone(),
        transport: first.transport.clone(),
        format: first.format.clone(),
        connections,
        duration_s: parts.iter().map(|p| p.duration_s).fold(0.0, f64::max),
        published: sum(|p| p.published),
        expected_deliveries: sum(|p| p.expected_deliveries),
        delivered,
        lost: sum(|p| p.lost),
        duplicates: sum(|p| p.duplicates),
        deliveries_per_sec: sumf(|p| p.deliveries_per_sec),
        connects_per_sec: sumf(|p| p.connects_per_sec),
        latency_ms,
        cpu_us_per_delivery: us_per(server.cpu_seconds, delivered),
        user_cpu_us_per_delivery: us_per(server.user_cpu_seconds, delivered),
        system_cpu_us_per_delivery: us_per(server.system_cpu_seconds, delivered),
        // The floor leaves it out: its storm measures the accepting end only.
        cpu_us_per_connect: us_per(server.connect_cpu_seconds, connections)
            .filter(|_| parts.iter().any(|p| p.cpu_us_per_connect.is_some())),
        server,
        connections_requested: sum(|p| p.connections_requested),
        connect_failures: sum(|p| p.connect_failures),
        disconnects: sum(|p| p.disconnects),
        misrouted: sum(|p| p.misrouted),
        receive: Receive::new(
            delivered,
            sum(|p| p.receive.frames),
            sum(|p| p.receive.reads),
        ),
        connect_latency_ms: upper_bound(parts.iter().map(|p| &p.connect_latency_ms)),
        publish: PublishStats {
            target_rate: sumf(|p| p.publish.target_rate),
            achieved_rate: sumf(|p| p.publish.achieved_rate),
            sent: sum(|p| p.publish.sent),
            errors: sum(|p| p.publish.errors),
            skipped: sum(|p| p.publish.skipped),
            rate_met: parts.iter().all(|p| p.publish.rate_met),
            first_error: parts.iter().find_map(|p| p.publish.first_error.clone()),
        },
        loadgen: Loadgen {
            cpu_seconds: sumf(|p| p.loadgen.cpu_seconds),
            measured_cpu_seconds: parts.iter().map(|p| p.loadgen.measured_cpu_seconds).sum(),
            rss_bytes: sum(|p| p.loadgen.rss_bytes),
        },
        host_load: [0, 1].map(|i| parts.iter().filter_map(|p| p.host_load[i]).reduce(f64::max)),
        errors,
        // The parts differ only in ports, pids, user offsets and source addresses.
        command: first.command.clone(),
        started_at: parts.iter().map(|p| p.started_at).min().unwrap_or(0),
        timeline: merge_timelines(parts),
        latency_histogram: pooled.as_ref().map(encode_histogram).transpose()?,
        merged_parts: parts.len() as u64,
        latency_pooled: pooled.is_some(),
        ..Summary::default()
    };
    extras::add_reconnects(&mut summary, parts);
    extras::add_floor(&mut summary, parts);
    Ok((summary, pooled))
}

/// The parts' latency histograms added together, if every part has one.
fn pool_latency(parts: &[Summary]) -> anyhow::Result<Option<Histogram<u64>>> {
    let mut pooled = new_histogram();
    for (i, p) in parts.iter().enumerate() {
        let Some(text) = &p.latency_histogram else {
            return Ok(None);
        };
        let h = decode_histogram(text).with_context(|| format!("histogram of part {}", i + 1))?;
        pooled
            .add(&h)
            .with_context(|| format!("histogram of part {} out of range", i + 1))?;
    }
    Ok(Some(pooled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Point;
    use crate::reconnect::Event;
    use crate::summary::{ConnectAccept, Server};
    use serde_json::Value;

    fn part(seed: u64, latencies_us: &[u64], save: bool) -> Summary {
        let mut h = new_histogram();
        for &us in latencies_us {
            h.record(us).unwrap();
        }
        Summary {
            scenario: "personal".into(),
            target: "herald".into(),
            connections: 100 * seed,
            duration_s: 10.0 + seed as f64,
            published: 10 * seed,
            expected_deliveries: 10 * seed,
            delivered: 10 * seed,
            lost: seed - 1,
            duplicates: 0,
            deliveries_per_sec: seed as f64,
            latency_ms: Percentiles::from_histogram(&h),
            server: Server {
                rss_bytes: Some(1_000 * seed),
                rss_bytes_per_connection: Some(10.0 * seed as f64),
                cpu_seconds: Some(seed as f64),
                pids: vec![seed as u32],
                ..Server::default()
            },
            publish: PublishStats {
                target_rate: 500.0,
                achieved_rate: 499.0,
                rate_met: true,
                ..PublishStats::default()
            },
            errors: vec![format!("e{seed}")],
            timeline: vec![Point {
                connections: 100 * seed,
                server_rss_bytes: Some(seed),
                latency_ms: Percentiles::from_histogram(&h),
                ..Point::default()
            }],
            latency_histogram: save.then(|| encode_histogram(&h).unwrap()),
            ..Summary::default()
        }
    }

    #[test]
    fn counts_and_server_figures_are_summed() {
        let (m, _) = merge(
            "multinode",
            &[part(1, &[1_000], true), part(2, &[3_000], true)],
        )
        .unwrap();
        assert_eq!(
            (m.scenario.as_str(), m.target.as_str()),
            ("multinode", "herald")
        );
        assert_eq!(
            (m.connections, m.published, m.delivered, m.lost),
            (300, 30, 30, 1)
        );
        assert_eq!(m.duration_s, 12.0);
        assert_eq!(m.server.rss_bytes, Some(3_000));
        assert_eq!(m.server.cpu_seconds, Some(3.0));
        assert_eq!(m.server.pids, [1, 2]);
        // (10 B × 100 + 20 B × 200) / 300 connections
        assert!((m.server.rss_bytes_per_connection.unwrap() - 50.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.cpu_us_per_delivery, Some(100_000.0));
        assert_eq!(m.publish.target_rate, 1_000.0);
        assert!(m.publish.rate_met);
        assert_eq!(m.errors, ["part 1: e1", "part 2: e2"]);
        assert_eq!(m.merged_parts, 2);
        assert_eq!(m.timeline[0].connections, 300);
        assert_eq!(m.timeline[0].server_rss_bytes, Some(3));
    }

    #[test]
    fn latency_is_pooled_when_every_part_has_its_histogram() {
        // 99 fast deliveries in one part, one slow in the other: the pooled p50 is fast,
        // while the largest of the parts' p50s is the slow one.
        let fast = [1_000; 99];
        let (m, pooled) = merge(
            "multinode",
            &[part(1, &fast, true), part(2, &[9_000], true)],
        )
        .unwrap();
        assert!(m.latency_pooled);
        assert_eq!(pooled.unwrap().len(), 100);
        assert!(
            (m.latency_ms.p50.unwrap() - 1.0).abs() < 0.01,
            "{:?}",
            m.latency_ms
        );
        assert!((m.latency_ms.max.unwrap() - 9.0).abs() < 0.01);

        let (m, pooled) = merge(
            "multinode",
            &[part(1, &fast, true), part(2, &[9_000], false)],
        )
        .unwrap();
        assert!(!m.latency_pooled && pooled.is_none());
        assert!(
            (m.latency_ms.p50.unwrap() - 9.0).abs() < 0.01,
            "upper bound: {:?}",
            m.latency_ms
        );
    }

    #[test]
    fn parts_must_agree() {
        let mut other = part(2, &[1], false);
        other.target = "ws".into();
        assert!(merge("multinode", &[part(1, &[1], false), other]).is_err());
        let mut sse = part(2, &[1], false);
        sse.transport = "sse".into();
        assert!(merge("multinode", &[part(1, &[1], false), sse]).is_err());
        let mut protobuf = part(2, &[1], false);
        protobuf.format = "protobuf".into();
        assert!(merge("multinode", &[part(1, &[1], false), protobuf]).is_err());
        assert!(merge("multinode", &[]).is_err());
        let mut partial = part(1, &[1], false);
        partial.server.cpu_seconds = None;
        let (m, _) = merge("multinode", &[partial, part(2, &[1], false)]).unwrap();
        assert_eq!(
            m.server.cpu_seconds, None,
            "a sum over some nodes only would mislead"
        );
    }

    /// A part with every figure a run can write set (the floor's and the reconnect figures
    /// together, which no single run has).
    fn full_part() -> Summary {
        let mut s = part(2, &[1_000, 2_000], true);
        s.transport = "ws".into();
        s.format = "protobuf".into();
        s.duplicates = 1;
        s.connects_per_sec = 100.0;
        s.server = Server {
            rss_bytes: Some(1),
            rss_bytes_per_connection: Some(1.0),
            cpu_seconds: Some(1.0),
            user_cpu_seconds: Some(0.5),
            system_cpu_seconds: Some(0.5),
            baseline_rss_bytes: Some(1),
            peak_rss_bytes: Some(1),
            connect_cpu_seconds: Some(0.1),
            pids: vec![7],
        };
        s.cpu_us_per_connect = Some(500.0);
        s.cpu_us_per_accept = Some(10.0);
        s.loadgen_cpu_us_per_connect = Some(20.0);
        s.connect_accept = Some(ConnectAccept::new(1_000, 2, 1.0, 0.01, 0.02));
        s.cpu_us_per_connect_accept = Some(30.0);
        s.connections_requested = 200;
        s.connect_failures = 1;
        s.disconnects = 1;
        s.misrouted = 1;
        s.receive = Receive::new(20, 10, 5);
        s.connect_latency_ms = s.latency_ms;
        s.publish.sent = 21;
        s.publish.errors = 1;
        s.publish.skipped = 1;
        s.publish.first_error = Some("404 Not Found at http://h/api/publish: ".into());
        s.loadgen = Loadgen {
            cpu_seconds: 1.0,
            measured_cpu_seconds: Some(0.5),
            rss_bytes: 1,
        };
        s.host_load = [Some(0.5), Some(0.7)];
        s.command = vec!["herald-loadtest".into()];
        s.started_at = 1_700_000_000;
        s.timeline[0] = Point {
            t_s: 1.0,
            connections: 200,
            published: 20,
            delivered: 20,
            publishes_per_sec: 20.0,
            deliveries_per_sec: 20.0,
            connects_per_sec: 1.0,
            latency_ms: s.latency_ms,
            server_rss_bytes: Some(1),
            server_cpu_cores: Some(0.5),
        };
        s.reconnects = Some(2);
        s.recovered = Some(1);
        s.unrecovered = Some(1);
        s.recovered_publications = Some(3);
        s.reconnect_failures = Some(1);
        s.out_of_order = Some(1);
        s.reconnect_events = Some(vec![Event::default(); 2]);
        s
    }

    /// Paths of the JSON leaves that hold something (not null, zero, false or empty).
    fn set_leaves(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| set_leaves(v, &format!("{path}.{k}"), out)),
            Value::Array(a) if !a.is_empty() => out.push(path.to_owned()),
            Value::Number(n) if n.as_f64() != Some(0.0) => out.push(path.to_owned()),
            Value::String(s) if !s.is_empty() => out.push(path.to_owned()),
            Value::Bool(true) => out.push(path.to_owned()),
            _ => {}
        }
    }

    #[test]
    fn every_figure_a_run_writes_survives_the_merge() {
        let part = full_part();
        let (m, _) = merge("multinode", &[part.clone(), part.clone()]).unwrap();
        let (mut written, mut merged) = (Vec::new(), Vec::new());
        set_leaves(&serde_json::to_value(&part).unwrap(), "", &mut written);
        set_leaves(&serde_json::to_value(&m).unwrap(), "", &mut merged);
        let dropped: Vec<_> = written.iter().filter(|k| !merged.contains(k)).collect();
        assert!(dropped.is_empty(), "merge drops {dropped:?}");
        assert_eq!(m.reconnects, Some(4));
        assert_eq!(m.reconnect_events.as_ref().map(Vec::len), Some(4));
        assert_eq!(m.publish.first_error, part.publish.first_error);
        assert_eq!(m.connect_accept.unwrap().connections, 2_000);
        assert!((m.cpu_us_per_accept.unwrap() - 10.0).abs() < 1e-9);
        assert!((m.loadgen_cpu_us_per_connect.unwrap() - 20.0).abs() < 1e-9);
    }
}
