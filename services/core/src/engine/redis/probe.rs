//! Readiness. A subscriber connection can look healthy while its subscriptions
//! are gone (centrifugo issues 766 and 1189), so each connection subscribes
//! probe channels (one per Cluster primary) and the node publishes a counter to
//! them every second: ready means connected and the probes keep arriving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::interfaces::{ClientLike, ClusterInterface};
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::conn::Shared;
use super::keys::tag_in_slots;
use super::pubsub::Subscriptions;

/// Probe period; a probe must arrive within two periods.
const INTERVAL: Duration = Duration::from_secs(1);

/// The probe channels connection `k` should have now, with whether they are
/// sharded: in Cluster one per primary, plus on connection 0 a plain one that
/// follows the control channel's path (plain pub/sub crosses the cluster bus).
fn wanted(shared: &Shared, subs: &Subscriptions, k: usize) -> Vec<(String, bool)> {
    if !shared.cluster {
        return vec![(shared.keys.probe(&shared.uid, k, "0"), false)];
    }
    let Some(state) = subs.conns[k].client.cached_cluster_state() else {
        return Vec::new();
    };
    let mut by_primary: HashMap<String, (u16, u16)> = HashMap::new();
    for range in state.slots() {
        by_primary
            .entry(range.primary.to_string())
            .or_insert((range.start, range.end));
    }
    let mut names: Vec<(String, bool)> = by_primary
        .values()
        .map(|(start, end)| {
            let tag = tag_in_slots(*start, *end);
            (shared.keys.probe(&shared.uid, k, &tag), true)
        })
        .collect();
    if k == 0 {
        names.push((shared.keys.probe(&shared.uid, k, "control"), false));
    }
    names.sort();
    names
}

/// Subscribes the initial probe channels.
pub(super) async fn subscribe_probes(
    shared: &Shared,
    subs: &Subscriptions,
) -> Result<(), crate::engine::EngineError> {
    for k in 0..subs.conns.len() {
        for (name, sharded) in wanted(shared, subs, k) {
            subs.add_static(k, name, sharded).await?;
        }
    }
    Ok(())
}

/// Whether every connection is up and has its subscriptions.
pub(super) fn connected(shared: &Shared, subs: &Subscriptions) -> bool {
    shared.pool.clients().iter().any(|c| c.is_connected())
        && subs
            .conns
            .iter()
            .all(|c| c.client.is_connected() && c.healthy.load(Ordering::SeqCst))
}

/// Runs the probe until cancelled, keeping `ready` up to date.
pub(super) async fn run(
    shared: Arc<Shared>,
    subs: Arc<Subscriptions>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Probe channel -> first round published to it.
    let mut since: HashMap<String, u64> = HashMap::new();
    let mut round = 0u64;
    let mut published = true;
    // The round last published, and when.
    let mut sent: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        round += 1;
        let mut probes = Vec::new();
        if let Some((last, at)) = sent.take() {
            observe_round_trips(&shared, &subs, last, at);
        }
        for k in 0..subs.conns.len() {
            let statics = subs.statics(k);
            for (name, sharded) in wanted(&shared, &subs, k) {
                if !statics.iter().any(|(s, _)| *s == name) {
                    if let Err(e) = subs.add_static(k, name.clone(), sharded).await {
                        warn!(error = %e, "probe subscribe failed");
                    }
                }
                probes.push((name, sharded));
            }
        }
        for (p, _) in &probes {
            since.entry(p.clone()).or_insert(round);
        }
        let arrived = probes.iter().all(|(p, _)| {
            let first = since[p];
            round < first + 2 || subs.received.latest(p) + 2 >= round
        });
        let now_ready = published && arrived && !probes.is_empty() && connected(&shared, &subs);
        if ready.swap(now_ready, Ordering::SeqCst) != now_ready {
            if now_ready {
                info!("redis engine ready");
            } else {
                warn!(published, arrived, "redis engine not ready");
            }
        }
        let sends = probes.iter().map(|(p, sharded)| {
            let shared = &shared;
            async move {
                let payload = round.to_string();
                let send = shared.send_pubsub(p.clone(), payload, *sharded);
                // A stuck Redis must not stall the probe: no answer within a period is a failure.
                tokio::time::timeout(INTERVAL, send)
                    .await
                    .map_err(|_| ())
                    .and_then(|r| r.map_err(|_| ()))
            }
        });
        sent = Some((round, Instant::now()));
        published = join_all(sends).await.iter().all(Result::is_ok);
        if !published {
            ready.store(false, Ordering::SeqCst);
        }
    }
}

/// Observes the round trip of every probe of round `round`, sent at `at`, that came back.
fn observe_round_trips(shared: &Shared, subs: &Subscriptions, round: u64, at: Instant) {
    for k in 0..subs.conns.len() {
        for (name, _) in subs.statics(k) {
            if let Some((n, arrived)) = subs.received.arrival(&name) {
                if n == round && arrived >= at {
                    let rtt = arrived.duration_since(at).as_secs_f64();
                    shared.metrics.probe_rtt.observe(rtt);
                }
            }
        }
    }
}
