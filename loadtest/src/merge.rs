//! `merge`: one summary out of the summaries of load processes that ran side by side, each
//! against its own node of one cluster (`run-multinode.sh`). Counts, rates and the server's CPU
//! and memory are summed (each part sampled its own node). Latency percentiles are those of the
//! pooled histograms when every part embeds one (`--save-histogram`); otherwise each is the
//! largest of the parts', an upper bound, since a quantile of pooled samples never exceeds the
//! largest of the parts' quantiles. Connect latency and the per-second latency of the timeline
//! always take that upper bound.

use std::path::Path;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use crate::cli::MergeArgs;
use crate::monitor::Point;
use crate::stats::{new_histogram, Percentiles};
use crate::summary::{
    decode_histogram, encode_histogram, us_per, Loadgen, PublishStats, Receive, Server, Summary,
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
    let (summary, latency) = merge(&args.scenario, &parts)?;
    summary.write(&args.out)?;
    eprintln!("wrote {}", args.out.display());
    match latency {
        Some(h) if !args.no_plots => write_plots(&summary, &h, &args.out),
        None if !args.no_plots => {
            eprintln!("plots not written: not every part embeds its latency histogram")
        }
        _ => {}
    }
    crate::print_summary(&summary);
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
    if let Some(odd) = parts
        .iter()
        .find(|p| (&p.target, &p.transport) != (&first.target, &first.transport))
    {
        bail!(
            "parts of different targets or transports: {} {} and {} {}",
            first.target,
            first.transport,
            odd.target,
            odd.transport
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
    let summary = Summary {
        scenario: scenario.to_owned(),
        target: first.target.clone(),
        transport: first.transport.clone(),
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
        cpu_us_per_connect: us_per(server.connect_cpu_seconds, connections),
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
        },
        loadgen: Loadgen {
            cpu_seconds: sumf(|p| p.loadgen.cpu_seconds),
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

/// Each percentile the largest of the parts'.
fn upper_bound<'a>(all: impl Iterator<Item = &'a Percentiles> + Clone) -> Percentiles {
    let max = |f: fn(&Percentiles) -> Option<f64>| all.clone().filter_map(f).reduce(f64::max);
    Percentiles {
        p50: max(|p| p.p50),
        p90: max(|p| p.p90),
        p99: max(|p| p.p99),
        p999: max(|p| p.p999),
        max: max(|p| p.max),
    }
}

/// Sum of a figure every part has; `None` if any part lacks it.
fn sum_all<T: std::iter::Sum<T>>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
    values.sum()
}

/// The nodes' figures summed. Peak RSS is the sum of each node's peak (an upper bound of the
/// peak of the sum); RSS per connection is the summed growth over all connections.
fn merge_servers(parts: &[Summary], connections: u64) -> Server {
    let servers = || parts.iter().map(|p| &p.server);
    let growth = sum_all(parts.iter().map(|p| {
        p.server
            .rss_bytes_per_connection
            .map(|per| per * p.connections as f64)
    }));
    Server {
        rss_bytes: sum_all(servers().map(|s| s.rss_bytes)),
        rss_bytes_per_connection: growth
            .filter(|_| connections > 0)
            .map(|g| g / connections as f64),
        cpu_seconds: sum_all(servers().map(|s| s.cpu_seconds)),
        user_cpu_seconds: sum_all(servers().map(|s| s.user_cpu_seconds)),
        system_cpu_seconds: sum_all(servers().map(|s| s.system_cpu_seconds)),
        baseline_rss_bytes: sum_all(servers().map(|s| s.baseline_rss_bytes)),
        peak_rss_bytes: sum_all(servers().map(|s| s.peak_rss_bytes)),
        connect_cpu_seconds: sum_all(servers().map(|s| s.connect_cpu_seconds)),
        pids: servers().flat_map(|s| s.pids.iter().copied()).collect(),
    }
}

/// Timelines aligned second by second (the parts start together): counts and rates summed,
/// server figures summed where every part has them, latency the largest of the parts'.
fn merge_timelines(parts: &[Summary]) -> Vec<Point> {
    let len = parts.iter().map(|p| p.timeline.len()).max().unwrap_or(0);
    (0..len)
        .map(|k| {
            let points: Vec<&Point> = parts.iter().filter_map(|p| p.timeline.get(k)).collect();
            let sum = |f: fn(&Point) -> u64| points.iter().map(|p| f(p)).sum::<u64>();
            let sumf = |f: fn(&Point) -> f64| points.iter().map(|p| f(p)).sum::<f64>();
            let complete = points.len() == parts.len();
            Point {
                t_s: points.iter().map(|p| p.t_s).fold(0.0, f64::max),
                connections: sum(|p| p.connections),
                published: sum(|p| p.published),
                delivered: sum(|p| p.delivered),
                publishes_per_sec: sumf(|p| p.publishes_per_sec),
                deliveries_per_sec: sumf(|p| p.deliveries_per_sec),
                connects_per_sec: sumf(|p| p.connects_per_sec),
                latency_ms: upper_bound(points.iter().map(|p| &p.latency_ms)),
                server_rss_bytes: sum_all(points.iter().map(|p| p.server_rss_bytes))
                    .filter(|_| complete),
                server_cpu_cores: sum_all(points.iter().map(|p| p.server_cpu_cores))
                    .filter(|_| complete),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(merge("multinode", &[]).is_err());
        let mut partial = part(1, &[1], false);
        partial.server.cpu_seconds = None;
        let (m, _) = merge("multinode", &[partial, part(2, &[1], false)]).unwrap();
        assert_eq!(
            m.server.cpu_seconds, None,
            "a sum over some nodes only would mislead"
        );
    }
}
