//! Herald's own view of a run: one histogram of the gateways' `/metrics` (Prometheus text,
//! saved before and after the measured phase by the fleet and storm scripts), summed over the
//! gateways, the run's share taken as after minus before, and its quantiles interpolated within
//! buckets the way Prometheus's `histogram_quantile` does. Reading files only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The histogram the fleet and storm reports quote: publication received from the engine to
/// its frame written to a client socket, observed by each gateway.
pub const PUBLISH_TO_WRITE: &str = "herald_publish_to_write_seconds";

/// Quantiles of a server-side histogram over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerLatency {
    /// Histogram name.
    pub metric: String,
    /// Gateways scraped.
    pub nodes: u64,
    /// Observations during the run.
    pub count: u64,
    /// Median, milliseconds (within the bucket holding it).
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

/// Cumulative bucket counts by upper bound (`+Inf` as infinity), summed over label sets.
type Buckets = BTreeMap<OrderedLe, f64>;

/// A bucket bound that sorts (bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedLe(f64);

impl Eq for OrderedLe {}

impl PartialOrd for OrderedLe {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedLe {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The `<metric>_bucket` series of one exposition, summed over their other labels.
fn buckets(text: &str, metric: &str) -> anyhow::Result<Buckets> {
    let prefix = format!("{metric}_bucket{{");
    let mut out = Buckets::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let (labels, value) = line[prefix.len()..]
            .split_once('}')
            .with_context(|| format!("bad series {line:?}"))?;
        let le = labels
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("le="))
            .with_context(|| format!("no le label in {line:?}"))?
            .trim_matches('"');
        let le = match le {
            "+Inf" => f64::INFINITY,
            le => le.parse().with_context(|| format!("bad le in {line:?}"))?,
        };
        let value: f64 = value
            .split_whitespace()
            .next()
            .unwrap_or("")
            .parse()
            .with_context(|| format!("bad value in {line:?}"))?;
        *out.entry(OrderedLe(le)).or_default() += value;
    }
    Ok(out)
}

/// Quantile `q` of cumulative `buckets`: linear within the bucket that holds it, the largest
/// finite bound if it falls in `+Inf`; `None` without observations.
fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = *buckets.get(&OrderedLe(f64::INFINITY))?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (&OrderedLe(le), &count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// `metric` over a run from the `/metrics` files saved `before` and `after` it, pairwise per
/// gateway (same order).
pub fn between(
    metric: &str,
    before: &[PathBuf],
    after: &[PathBuf],
) -> anyhow::Result<ServerLatency> {
    if before.len() != after.len() || before.is_empty() {
        bail!(
            "{} metrics files before the run and {} after: one of each per gateway",
            before.len(),
            after.len()
        );
    }
    let read = |p: &PathBuf| -> anyhow::Result<Buckets> {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        let b = buckets(&text, metric).with_context(|| format!("parse {}", p.display()))?;
        if b.is_empty() {
            bail!("{} has no {metric} histogram", p.display());
        }
        Ok(b)
    };
    let mut delta = Buckets::new();
    for (b, a) in before.iter().zip(after) {
        let (b, a) = (read(b)?, read(a)?);
        for (le, count) in a {
            *delta.entry(le).or_default() += count - b.get(&le).copied().unwrap_or(0.0);
        }
    }
    let ms = |q| quantile(&delta, q).map(|s| s * 1000.0);
    Ok(ServerLatency {
        metric: metric.to_owned(),
        nodes: before.len() as u64,
        count: delta.get(&OrderedLe(f64::INFINITY)).copied().unwrap_or(0.0) as u64,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP herald_publish_to_write_seconds x\n\
        # TYPE herald_publish_to_write_seconds histogram\n\
        herald_publish_to_write_seconds_bucket{le=\"0.001\"} 50\n\
        herald_publish_to_write_seconds_bucket{le=\"0.01\"} 90\n\
        herald_publish_to_write_seconds_bucket{le=\"0.1\"} 100\n\
        herald_publish_to_write_seconds_bucket{le=\"+Inf\"} 100\n\
        herald_publish_to_write_seconds_sum 1.5\n\
        herald_publish_to_write_seconds_count 100\n\
        herald_publish_to_write_secondsx_bucket{le=\"+Inf\"} 7\n";

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let b = buckets(TEXT, PUBLISH_TO_WRITE).unwrap();
        assert_eq!(b.len(), 4);
        assert!((quantile(&b, 0.5).unwrap() - 0.001).abs() < 1e-12);
        // Rank 99 lies 9/10 into the (0.01, 0.1] bucket.
        assert!((quantile(&b, 0.99).unwrap() - 0.091).abs() < 1e-12);
        assert!((quantile(&b, 0.25).unwrap() - 0.0005).abs() < 1e-12);
        assert_eq!(quantile(&Buckets::new(), 0.5), None);
    }

    #[test]
    fn labels_are_summed_and_overflow_takes_the_largest_bound() {
        let text = "m_bucket{node=\"a\",le=\"1\"} 1\nm_bucket{node=\"b\",le=\"1\"} 1\n\
            m_bucket{node=\"a\",le=\"+Inf\"} 2\nm_bucket{node=\"b\",le=\"+Inf\"} 10\n";
        let b = buckets(text, "m").unwrap();
        assert_eq!(b[&OrderedLe(1.0)], 2.0);
        assert_eq!(quantile(&b, 0.99), Some(1.0));
        assert!(buckets("m_bucket{le=\"x\"} 1", "m").is_err());
    }

    #[test]
    fn the_run_is_after_minus_before() {
        let dir = std::env::temp_dir().join(format!("herald-scrape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let before = dir.join("before");
        let after = dir.join("after");
        std::fs::write(&before, TEXT).unwrap();
        std::fs::write(&after, TEXT.replace(" 100\n", " 200\n")).unwrap();
        let l = between(PUBLISH_TO_WRITE, std::slice::from_ref(&before), &[after]).unwrap();
        // Only the (0.01, 0.1] bucket grew: 100 observations in it.
        assert_eq!(l.count, 100);
        assert!((l.p50_ms.unwrap() - 55.0).abs() < 1e-9, "{l:?}");
        assert!(between(PUBLISH_TO_WRITE, &[before], &[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
