//! What the report's tables show: the rows of each scenario's table (label, figure of a
//! summary, decimals), the median that fills a cell, and the lines comparing a target's cost
//! with the floor's. Reading summaries and writing the page are left to `report`.

use crate::summary::Summary;

/// One row of a table: label, extractor, decimals.
pub struct Row(pub &'static str, pub fn(&Summary) -> Option<f64>, pub usize);

/// The rows of `scenario`'s table, in order.
pub fn rows(scenario: &str) -> Vec<Row> {
    if super::scale::is_scale(scenario) {
        return super::scale::rows(scenario);
    }
    let lat = [
        Row("latency p50 (ms)", |s| s.latency_ms.p50, 2),
        Row("latency p90 (ms)", |s| s.latency_ms.p90, 2),
        Row("latency p99 (ms)", |s| s.latency_ms.p99, 2),
        Row("latency p99.9 (ms)", |s| s.latency_ms.p999, 2),
        Row("latency max (ms)", |s| s.latency_ms.max, 2),
    ];
    let mut r = vec![Row("connections", |s| Some(s.connections as f64), 0)];
    match scenario {
        "broadcast" | "personal" | "multinode" | "floor" => {
            r.push(Row(
                "publications/s accepted",
                |s| Some(s.publish.achieved_rate),
                1,
            ));
            r.push(Row("deliveries/s", |s| Some(s.deliveries_per_sec), 0));
            r.extend(lat);
            r.push(Row(
                "expected deliveries",
                |s| Some(s.expected_deliveries as f64),
                0,
            ));
            r.push(Row("lost", |s| Some(s.lost as f64), 0));
            r.push(Row("duplicates", |s| Some(s.duplicates as f64), 0));
            r.push(Row("server CPU (s)", |s| s.server.cpu_seconds, 2));
            r.push(Row(
                "server CPU µs / delivery",
                |s| s.cpu_us_per_delivery,
                3,
            ));
            r.push(Row("  of which user", |s| s.user_cpu_us_per_delivery, 3));
            r.push(Row(
                "  of which system",
                |s| s.system_cpu_us_per_delivery,
                3,
            ));
            r.push(Row("server RSS (MiB)", |s| s.server.rss_bytes.map(mib), 1));
            r.push(Row(
                "deliveries per frame (WebSocket) or event (SSE)",
                |s| s.receive.deliveries_per_frame,
                2,
            ));
        }
        "idle" => {
            r.push(Row("server RSS (MiB)", |s| s.server.rss_bytes.map(mib), 1));
            r.push(Row(
                "RSS / connection (bytes)",
                |s| s.server.rss_bytes_per_connection,
                0,
            ));
        }
        _ => {}
    }
    if scenario == "floor" {
        r.push(Row(
            "bare connect/accept storm: connects/s",
            |s| Some(s.connects_per_sec),
            0,
        ));
        r.push(Row(
            "  CPU µs / accept+close, accepting end (floor process)",
            accept_cpu_us,
            1,
        ));
        r.push(Row(
            "  CPU µs / connect+close, connecting end (load generator)",
            |s| s.loadgen_cpu_us_per_connect,
            1,
        ));
        r.push(Row(
            "CPU µs / connect+accept+close, both ends in one process",
            |s| s.cpu_us_per_connect_accept,
            1,
        ));
        r.push(Row(
            "  connections/s of that loop",
            |s| s.connect_accept.as_ref().map(|c| c.per_sec),
            0,
        ));
    }
    if scenario == "idle" || scenario == "churn" {
        r.push(Row("connects/s", |s| Some(s.connects_per_sec), 0));
        r.push(Row("server CPU µs / connect", |s| s.cpu_us_per_connect, 1));
    }
    if scenario == "floor" || scenario == "idle" || scenario == "churn" {
        r.push(Row(
            "connect latency p50 (ms)",
            |s| s.connect_latency_ms.p50,
            2,
        ));
        r.push(Row(
            "connect latency p99 (ms)",
            |s| s.connect_latency_ms.p99,
            2,
        ));
        r.push(Row(
            "connect failures",
            |s| Some(s.connect_failures as f64),
            0,
        ));
    }
    r.push(Row(
        "load generator CPU (s)",
        |s| Some(s.loadgen.cpu_seconds),
        1,
    ));
    r.push(Row("host load average at start", |s| s.host_load[0], 2));
    r
}

/// The floor's CPU per accepted bare connection; summaries written before the both-ends loop
/// existed kept it in `cpu_us_per_connect`.
pub fn accept_cpu_us(s: &Summary) -> Option<f64> {
    s.cpu_us_per_accept.or(s.cpu_us_per_connect)
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// Median of the present values.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The ratio lines of target `t` in `scenario`, given the median of a figure of a cell.
pub fn ratio_lines(
    scenario: &str,
    t: &str,
    med: impl Fn(&str, &str, fn(&Summary) -> Option<f64>) -> Option<f64>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = |metric: &str, v: Option<f64>, floor: Option<f64>, what: &str| {
        if let (Some(v), Some(fl)) = (v, floor.filter(|f| *f > 0.0)) {
            out.push(format!(
                "- {t}: {metric} = {:.1} × the floor's {what} ({fl:.1} µs)",
                v / fl
            ));
        }
    };
    match scenario {
        // The floor writes the same frames to the same sockets: only broadcast compares.
        "broadcast" => line(
            "server CPU µs per delivery",
            med(scenario, t, |s| s.cpu_us_per_delivery),
            med("floor", "floor", |s| s.cpu_us_per_delivery),
            "CPU µs per frame written",
        ),
        "idle" | "churn" => {
            let v = med(scenario, t, |s| s.cpu_us_per_connect);
            line(
                "server CPU µs per connect (server side of a full handshake)",
                v,
                med("floor", "floor", |s| s.cpu_us_per_connect_accept),
                "CPU µs per bare TCP connect+accept+close counting both ends",
            );
            line(
                "server CPU µs per connect (server side of a full handshake)",
                v,
                med("floor", "floor", accept_cpu_us),
                "CPU µs per bare TCP accept+close, accepting end only",
            );
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn churn_compares_with_both_floor_figures() {
        let med = |sc: &str, t: &str, f: fn(&Summary) -> Option<f64>| {
            let s = match (sc, t) {
                ("floor", "floor") => Summary {
                    cpu_us_per_accept: Some(9.0),
                    cpu_us_per_connect_accept: Some(45.0),
                    ..Summary::default()
                },
                ("churn", "herald") => Summary {
                    cpu_us_per_connect: Some(135.0),
                    ..Summary::default()
                },
                _ => return None,
            };
            f(&s)
        };
        let lines = ratio_lines("churn", "herald", med);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("= 3.0 ×") && lines[0].contains("both ends (45.0 µs)"));
        assert!(lines[1].contains("= 15.0 ×") && lines[1].contains("accepting end only"));
        assert!(ratio_lines("churn", "ws", med).is_empty());
        let old_floor = Summary {
            cpu_us_per_connect: Some(8.0),
            ..Summary::default()
        };
        assert_eq!(accept_cpu_us(&old_floor), Some(8.0));
    }
}
