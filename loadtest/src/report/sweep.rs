//! The rate sweeps (`run-sweep.sh`: scenarios `sweep-<name>`): one fleet run per rate, one
//! table row per run in order of rate, and the highest rate whose client-observed p99 stayed
//! under each latency target with nothing lost. Layout of the rest of the page is `report`'s.

use std::fmt::Write as _;

use crate::summary::Summary;

/// Client-observed p99 targets (ms) the sweep names the highest rate for.
const TARGETS_MS: [f64; 2] = [20.0, 100.0];

/// Whether `scenario` is a rate sweep.
pub fn is_sweep(scenario: &str) -> bool {
    scenario.starts_with("sweep-")
}

/// Cores a CPU figure took over the run.
fn cores(cpu_s: Option<f64>, s: &Summary) -> Option<f64> {
    cpu_s
        .filter(|_| s.duration_s > 0.0)
        .map(|c| c / s.duration_s)
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Writes the table of one sweep: `runs` are its summaries, in any order.
pub fn write(md: &mut String, scenario: &str, runs: &[&Summary]) -> std::fmt::Result {
    let mut runs = runs.to_vec();
    runs.sort_by(|a, b| a.publish.target_rate.total_cmp(&b.publish.target_rate));
    let Some(first) = runs.first() else {
        return Ok(());
    };
    writeln!(
        md,
        "## Rate sweep `{}`: {} users over {} gateways, {} load processes\n",
        scenario.trim_start_matches("sweep-"),
        first.connections_requested,
        first
            .herald_publish_to_write
            .as_ref()
            .map_or(0, |h| h.nodes),
        first.merged_parts.max(1),
    )?;
    writeln!(
        md,
        "`loadtest/run-sweep.sh`: one fleet run per rate, one run each (the command of each is \
         listed under Commands). Cores are CPU seconds over the run's wall time; the gateways' \
         from `/proc`, Redis's from `INFO`, the publisher nodes' from `/proc`.\n"
    )?;
    writeln!(
        md,
        "| publications/s asked | accepted | deliveries/s | lost | duplicates | client p50 (ms) | \
         client p99 (ms) | Herald publish-to-write p99 (ms) | gateway CPU µs / delivery | \
         gateway cores | Redis cores | publisher cores | load processes' cores |"
    )?;
    writeln!(md, "|{}", "---:|".repeat(13))?;
    for s in &runs {
        let pw = s.herald_publish_to_write.as_ref();
        let cells = [
            cell(Some(s.publish.target_rate), 0),
            cell(Some(s.publish.achieved_rate), 0),
            cell(Some(s.deliveries_per_sec), 0),
            s.lost.to_string(),
            s.duplicates.to_string(),
            cell(s.latency_ms.p50, 2),
            cell(s.latency_ms.p99, 2),
            cell(pw.and_then(|h| h.p99_ms), 2),
            cell(s.cpu_us_per_delivery, 2),
            cell(cores(s.server.cpu_seconds, s), 2),
            cell(cores(s.redis.as_ref().map(|r| r.cpu_s), s), 2),
            cell(cores(s.publisher_cpu_s, s), 2),
            cell(cores(Some(super::scale::loadgen_cpu(s)), s), 2),
        ];
        writeln!(md, "| {} |", cells.join(" | "))?;
    }
    md.push('\n');
    for target in TARGETS_MS {
        let best = highest_within(&runs, target);
        writeln!(
            md,
            "- highest rate with client p99 under {target} ms and nothing lost: {}",
            best.map_or_else(
                || "none of these".to_owned(),
                |s| format!(
                    "{:.0} publications/s ({:.0} deliveries/s)",
                    s.publish.achieved_rate, s.deliveries_per_sec
                )
            )
        )?;
    }
    md.push('\n');
    Ok(())
}

/// The run of highest rate whose client p99 is under `target_ms`, nothing lost and the rate met.
fn highest_within<'a>(runs: &[&'a Summary], target_ms: f64) -> Option<&'a Summary> {
    runs.iter()
        .copied()
        .filter(|s| s.lost == 0 && s.publish.rate_met)
        .filter(|s| s.latency_ms.p99.is_some_and(|p| p < target_ms))
        .max_by(|a, b| a.publish.achieved_rate.total_cmp(&b.publish.achieved_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64, p99: f64, lost: u64) -> Summary {
        let mut s = Summary {
            lost,
            duration_s: 10.0,
            ..Summary::default()
        };
        s.publish.target_rate = rate;
        s.publish.achieved_rate = rate;
        s.publish.rate_met = true;
        s.latency_ms.p99 = Some(p99);
        s.server.cpu_seconds = Some(5.0);
        s
    }

    #[test]
    fn rows_go_by_rate_and_the_best_rate_respects_loss_and_latency() {
        let (a, b, c, d) = (
            run(2000.0, 150.0, 0),
            run(500.0, 5.0, 0),
            run(1000.0, 60.0, 0),
            run(1500.0, 50.0, 3),
        );
        let runs = [&a, &b, &c, &d];
        assert_eq!(
            highest_within(&runs, 100.0).unwrap().publish.target_rate,
            1000.0
        );
        assert_eq!(
            highest_within(&runs, 20.0).unwrap().publish.target_rate,
            500.0
        );
        assert!(highest_within(&runs, 1.0).is_none());
        let mut md = String::new();
        write(&mut md, "sweep-fleet", &runs).unwrap();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(
            rows[1].starts_with("| 500 |") && rows[4].starts_with("| 2000 |"),
            "{md}"
        );
        assert!(rows[1].contains("| 0.50 |"), "gateway cores: {md}");
        assert!(md.contains("under 100 ms and nothing lost: 1000 publications/s"));
    }
}
