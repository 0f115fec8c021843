//! The headline of a summary on stderr: connections, deliveries, latency, server cost, and the
//! floor and reconnect figures when the run has them. Deciding whether the run counts is
//! `verdict`'s; the JSON is `summary`'s.

use crate::summary::Summary;

/// Prints the headline figures of a summary on stderr.
pub fn print(s: &Summary) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let l = &s.latency_ms;
    let transport = match (s.transport.as_str(), s.format.as_str()) {
        ("sse", _) => " over SSE",
        (_, "protobuf") => " in Protobuf",
        _ => "",
    };
    eprintln!(
        "{} {}{transport}: {} connections ({:.0}/s), published {}, delivered {}/{} (lost {}, \
         duplicates {}), {:.0} deliveries/s, latency ms p50 {} p90 {} p99 {} p99.9 {} max {}",
        s.target,
        s.scenario,
        s.connections,
        s.connects_per_sec,
        s.published,
        s.delivered,
        s.expected_deliveries,
        s.lost,
        s.duplicates,
        s.deliveries_per_sec,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
    );
    if let (Some(cpu), Some(rss)) = (s.server.cpu_seconds, s.server.rss_bytes) {
        let per = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        eprintln!(
            "server: {cpu:.2} CPU s, RSS {:.1} MiB, {} bytes/connection, {} CPU us/delivery, {} CPU us/connect",
            rss as f64 / 1_048_576.0,
            s.server.rss_bytes_per_connection.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
            per(s.cpu_us_per_delivery),
            per(s.cpu_us_per_connect),
        );
    }
    if let Some(c) = &s.connect_accept {
        eprintln!(
            "floor: storm {} CPU us/accept (accepting end) + {} CPU us/connect (load generator); \
             {} CPU us/connect+accept counting both ends in one process ({} connections in \
             {:.1}s on {} threads, {:.0}/s)",
            s.cpu_us_per_accept
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
            s.loadgen_cpu_us_per_connect
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
            c.cpu_us_per_connect_accept
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
            c.connections,
            c.wall_s,
            c.threads,
            c.per_sec,
        );
    }
    if let (Some(n), Some(ooo)) = (s.reconnects, s.out_of_order) {
        let or0 = |v: Option<u64>| v.unwrap_or(0);
        eprintln!(
            "reconnect: {n} reconnects ({} recovered, {} unrecovered, {} publications recovered, \
             {} failed attempts), {ooo} out of order, {} publish errors",
            or0(s.recovered),
            or0(s.unrecovered),
            or0(s.recovered_publications),
            or0(s.reconnect_failures),
            s.publish.errors,
        );
    }
    if let Some(t) = &s.storm {
        eprintln!(
            "storm: {} clients back after {:.2}s (99%) and {:.2}s (all) from the first close, \
             {} not recovered",
            t.clients, t.back_99_s, t.back_100_s, t.unrecovered
        );
    }
    if let Some(h) = &s.herald_publish_to_write {
        eprintln!(
            "herald: publish-to-write ms p50 {} p99 {} ({} frames on {} gateways)",
            ms(h.p50_ms),
            ms(h.p99_ms),
            h.count,
            h.nodes
        );
    }
    if let Some(r) = &s.redis {
        let busiest: Vec<String> = {
            let mut v: Vec<(&String, &u64)> = r.per_command.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1));
            v.iter().take(5).map(|(k, n)| format!("{k} {n}")).collect()
        };
        eprintln!(
            "redis: {:.2} CPU s on {} instances, {} commands ({}){}",
            r.cpu_s,
            r.instances,
            r.commands,
            busiest.join(", "),
            r.commands_per_reconnect
                .map_or_else(String::new, |c| format!(", {c:.1} per reconnect")),
        );
    }
    if !s.publish.rate_met && s.publish.target_rate > 0.0 {
        eprintln!(
            "warning: target rate {}/s not met: {:.1}/s accepted, {} skipped (in-flight bound), {} errors",
            s.publish.target_rate, s.publish.achieved_rate, s.publish.skipped, s.publish.errors
        );
    }
    for e in &s.errors {
        eprintln!("  {e}");
    }
}
