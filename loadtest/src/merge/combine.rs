//! How the figures every run writes combine across parts: sums over parts that all have a
//! figure, the largest of the parts' percentiles, the nodes' server figures and the timelines
//! aligned second by second. Assembling the merged summary is `merge`'s.

use crate::monitor::Point;
use crate::stats::Percentiles;
use crate::summary::{Server, Summary};

/// Each percentile the largest of the parts'.
pub fn upper_bound<'a>(all: impl Iterator<Item = &'a Percentiles> + Clone) -> Percentiles {
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
pub fn merge_servers(parts: &[Summary], connections: u64) -> Server {
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
pub fn merge_timelines(parts: &[Summary]) -> Vec<Point> {
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
