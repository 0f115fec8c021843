//! The figures that only some runs write, combined for `merge`: the reconnect figures of
//! `--reconnect` runs and the floor's bare connect/accept figures. The figures every run writes
//! are combined in `merge` itself.

use crate::summary::{ConnectAccept, Summary};

/// Sum of a figure over the parts that have it; `None` when none has. A part without reconnect
/// figures did not run with `--reconnect`, so it reconnected nothing.
fn sum_present(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.flatten().reduce(|a, b| a + b)
}

/// Reconnect counts summed, every part's reconnect events kept (in part order).
pub fn add_reconnects(merged: &mut Summary, parts: &[Summary]) {
    let sum = |f: fn(&Summary) -> Option<u64>| sum_present(parts.iter().map(f));
    merged.reconnects = sum(|p| p.reconnects);
    merged.recovered = sum(|p| p.recovered);
    merged.unrecovered = sum(|p| p.unrecovered);
    merged.recovered_publications = sum(|p| p.recovered_publications);
    merged.reconnect_failures = sum(|p| p.reconnect_failures);
    merged.out_of_order = sum(|p| p.out_of_order);
    merged.reconnect_events = parts
        .iter()
        .filter_map(|p| p.reconnect_events.clone())
        .reduce(|mut all, events| {
            all.extend(events);
            all
        });
    merged.storm = merged
        .reconnect_events
        .as_deref()
        .and_then(|e| crate::reconnect::storm(e, merged.reconnect_failures.unwrap_or(0)));
}

/// Bare connections of a floor part's connect/accept storm, from the accepting end's CPU and
/// its CPU per accept (the summary keeps those two, not the count).
fn storm_connects(p: &Summary) -> Option<f64> {
    let cpu = p.server.connect_cpu_seconds?;
    let per = p.cpu_us_per_accept.filter(|v| *v > 0.0)?;
    Some(cpu * 1e6 / per)
}

/// The floor's figures: the connect-to-self loops added up, and the storm's CPU per connection
/// pooled over every part's connections. `None` where a part lacks its figure, as a figure of
/// some parts only would mislead. `merged.server` must already be the parts' sum.
pub fn add_floor(merged: &mut Summary, parts: &[Summary]) {
    let loops: Option<Vec<&ConnectAccept>> =
        parts.iter().map(|p| p.connect_accept.as_ref()).collect();
    merged.connect_accept = loops.filter(|l| !l.is_empty()).map(|loops| {
        ConnectAccept::new(
            loops.iter().map(|c| c.connections).sum(),
            loops.iter().map(|c| c.threads).sum(),
            loops.iter().map(|c| c.wall_s).fold(0.0, f64::max),
            loops.iter().map(|c| c.user_cpu_seconds).sum(),
            loops.iter().map(|c| c.system_cpu_seconds).sum(),
        )
    });
    merged.cpu_us_per_connect_accept = merged
        .connect_accept
        .as_ref()
        .and_then(|c| c.cpu_us_per_connect_accept);
    let connects: Option<Vec<f64>> = parts.iter().map(storm_connects).collect();
    let Some(connects) = connects.filter(|c| !c.is_empty()) else {
        merged.cpu_us_per_accept = None;
        merged.loadgen_cpu_us_per_connect = None;
        return;
    };
    let total: f64 = connects.iter().sum();
    let per_connect = |cost_us: f64| (total > 0.0).then(|| cost_us / total);
    merged.cpu_us_per_accept = merged
        .server
        .connect_cpu_seconds
        .and_then(|s| per_connect(s * 1e6));
    let loadgen_us: Option<f64> = parts
        .iter()
        .zip(&connects)
        .map(|(p, n)| p.loadgen_cpu_us_per_connect.map(|us| us * n))
        .sum();
    merged.loadgen_cpu_us_per_connect = loadgen_us.and_then(per_connect);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconnect::Event;
    use crate::summary::Server;

    fn reconnecting(n: u64, code: u16) -> Summary {
        Summary {
            reconnects: Some(n),
            recovered: Some(n - 1),
            unrecovered: Some(1),
            recovered_publications: Some(10 * n),
            reconnect_failures: Some(2),
            out_of_order: Some(n % 2),
            reconnect_events: Some(vec![
                Event {
                    code: Some(code),
                    attempts: 1,
                    ..Event::default()
                };
                n as usize
            ]),
            ..Summary::default()
        }
    }

    #[test]
    fn reconnect_figures_are_summed_and_events_kept() {
        let parts = [
            reconnecting(3, 3001),
            Summary::default(),
            reconnecting(2, 3011),
        ];
        let mut m = Summary::default();
        add_reconnects(&mut m, &parts);
        assert_eq!(
            (m.reconnects, m.recovered, m.unrecovered),
            (Some(5), Some(3), Some(2))
        );
        assert_eq!(m.recovered_publications, Some(50));
        assert_eq!(m.reconnect_failures, Some(4));
        assert_eq!(m.out_of_order, Some(1));
        let codes: Vec<_> = m.reconnect_events.unwrap().iter().map(|e| e.code).collect();
        assert_eq!(
            codes,
            [Some(3001); 3]
                .into_iter()
                .chain([Some(3011); 2])
                .collect::<Vec<_>>()
        );

        let mut plain = Summary::default();
        add_reconnects(&mut plain, &[Summary::default(), Summary::default()]);
        assert_eq!((plain.reconnects, plain.reconnect_events), (None, None));
    }

    fn floor(connects: f64, accept_cpu_s: f64, loadgen_us: f64, loop_connections: u64) -> Summary {
        Summary {
            cpu_us_per_accept: Some(accept_cpu_s * 1e6 / connects),
            loadgen_cpu_us_per_connect: Some(loadgen_us),
            connect_accept: Some(ConnectAccept::new(loop_connections, 2, 2.0, 0.1, 0.2)),
            server: Server {
                connect_cpu_seconds: Some(accept_cpu_s),
                ..Server::default()
            },
            ..Summary::default()
        }
    }

    #[test]
    fn floor_figures_are_pooled_over_every_connection() {
        // 1,000 connections at 10 µs and 3,000 at 30 µs: 100,000 µs over 4,000 connections.
        let parts = [
            floor(1_000.0, 0.01, 4.0, 1_000),
            floor(3_000.0, 0.09, 8.0, 3_000),
        ];
        let mut m = Summary {
            server: Server {
                connect_cpu_seconds: Some(0.1),
                ..Server::default()
            },
            ..Summary::default()
        };
        add_floor(&mut m, &parts);
        assert!((m.cpu_us_per_accept.unwrap() - 25.0).abs() < 1e-9, "{m:?}");
        // (4 µs × 1,000 + 8 µs × 3,000) / 4,000
        assert!((m.loadgen_cpu_us_per_connect.unwrap() - 7.0).abs() < 1e-9);
        let c = m.connect_accept.unwrap();
        assert_eq!((c.connections, c.threads, c.wall_s), (4_000, 4, 2.0));
        // 0.6 CPU s over 4,000 connections
        assert!((m.cpu_us_per_connect_accept.unwrap() - 150.0).abs() < 1e-9);

        let mut partial = Summary::default();
        add_floor(&mut partial, &[parts[0].clone(), Summary::default()]);
        assert_eq!(partial.cpu_us_per_accept, None);
        assert!(partial.connect_accept.is_none());
    }
}
