//! What arrives on subscriber connections: pub/sub messages (routed to the
//! delivery workers, or control commands and probes handled here, probe
//! counters kept for the readiness probe), connection failures and lag; plus
//! the (S)SUBSCRIBE commands sent on them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fred::interfaces::{ClientLike, PubsubInterface};
use fred::types::config::Options;
use fred::types::Message as FredMessage;
use futures_util::future::join_all;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Subscriptions, BATCH};
use crate::engine::redis::sync::Event;
use crate::engine::EngineError;

/// Deadline of one (S)SUBSCRIBE or (S)UNSUBSCRIBE command.
const SUBSCRIBE_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The latest probe counter seen per probe channel, and when it arrived.
#[derive(Default)]
pub(in crate::engine::redis) struct Received {
    latest: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Received {
    /// Records a probe message.
    fn record(&self, channel: &str, payload: &[u8]) {
        let Some(n) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        let now = Instant::now();
        let mut latest = self.latest.lock().expect("poisoned");
        let seen = latest.entry(channel.to_owned()).or_insert((0, now));
        if n > seen.0 {
            *seen = (n, now);
        }
    }

    /// The highest probe counter seen on `channel` (0: none yet).
    pub(in crate::engine::redis) fn latest(&self, channel: &str) -> u64 {
        self.arrival(channel).map_or(0, |(n, _)| n)
    }

    /// The highest probe counter seen on `channel` and when it arrived.
    pub(in crate::engine::redis) fn arrival(&self, channel: &str) -> Option<(u64, Instant)> {
        self.latest.lock().expect("poisoned").get(channel).copied()
    }
}

/// A connection failure as fred reports it.
pub(super) type Failure = (fred::error::Error, Option<fred::types::config::Server>);

impl Subscriptions {
    /// Marks connection `k` unhealthy as soon as it fails: its subscriptions are
    /// gone until `restore` ran after the reconnect.
    pub(super) async fn watch(
        self: Arc<Self>,
        k: usize,
        mut errors: broadcast::Receiver<Failure>,
        cancel: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                e = errors.recv() => e,
            };
            match event {
                Err(broadcast::error::RecvError::Closed) => break,
                Ok((e, _)) => {
                    debug!(conn = k, error = %e, "subscriber connection failed");
                    self.conns[k].healthy.store(false, Ordering::SeqCst);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.conns[k].healthy.store(false, Ordering::SeqCst);
                }
            }
        }
    }

    /// Sends (S)SUBSCRIBE or (S)UNSUBSCRIBE for `names`; one result per name.
    pub(super) async fn send(
        &self,
        k: usize,
        names: Vec<String>,
        sharded: bool,
        on: bool,
    ) -> Vec<Result<(), EngineError>> {
        // A (S)SUBSCRIBE lost in a reconnect must not hold up the retry for long.
        let options = Options {
            timeout: Some(SUBSCRIBE_COMMAND_TIMEOUT),
            ..Options::default()
        };
        let client = &self.conns[k].client.with_options(&options);
        let shared = &self.shared;
        let op = if on { "subscribe" } else { "unsubscribe" };
        // SSUBSCRIBE takes channels of one slot only.
        let groups: Vec<Vec<usize>> = if sharded {
            let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (i, n) in names.iter().enumerate() {
                by_slot
                    .entry(fred::util::redis_keyslot(n.as_bytes()))
                    .or_default()
                    .push(i);
            }
            by_slot
                .into_values()
                .flat_map(|g| g.chunks(BATCH).map(<[usize]>::to_vec).collect::<Vec<_>>())
                .collect()
        } else {
            (0..names.len())
                .collect::<Vec<_>>()
                .chunks(BATCH)
                .map(<[usize]>::to_vec)
                .collect()
        };
        let calls = groups.iter().map(|g| {
            let group: Vec<String> = g.iter().map(|&i| names[i].clone()).collect();
            async move {
                let fut = async {
                    match (sharded, on) {
                        (true, true) => client.ssubscribe(group).await,
                        (true, false) => client.sunsubscribe(group).await,
                        (false, true) => client.subscribe(group).await,
                        (false, false) => client.unsubscribe(group).await,
                    }
                };
                shared.timed(op, fut).await
            }
        });
        let outcomes = join_all(calls).await;
        let mut results: Vec<Result<(), EngineError>> = names.iter().map(|_| Ok(())).collect();
        for (group, outcome) in groups.iter().zip(outcomes) {
            if let Err(e) = outcome {
                for &i in group {
                    results[i] = Err(e.clone());
                }
            }
        }
        results
    }

    /// Reads connection `k`'s messages until cancelled.
    pub(super) async fn read(
        self: Arc<Self>,
        k: usize,
        mut messages: broadcast::Receiver<FredMessage>,
        cancel: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                m = messages.recv() => m,
            };
            match message {
                Ok(m) => self.route(m).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        conn = k,
                        skipped = n,
                        "pub/sub reader lagged, checking every channel"
                    );
                    self.shared.metrics.lagged.inc_by(n);
                    self.workers.resync(Some(k)).await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    async fn route(&self, m: FredMessage) {
        let keys = &self.shared.keys;
        let Some(payload) = m.value.into_bytes() else {
            return;
        };
        if let Some(channel) = keys.channel_of(&m.channel) {
            let channel: Arc<str> = Arc::from(channel);
            self.workers
                .send(&channel.clone(), Event::Message { channel, payload })
                .await;
        } else if keys.is_control(&m.channel) {
            match serde_json::from_slice(&payload) {
                Ok(command) => self.shared.handler.on_control(&command),
                Err(e) => warn!(error = %e, "undecodable control command dropped"),
            }
        } else if keys.is_node(&m.channel) {
            match serde_json::from_slice(&payload) {
                Ok(emulation) => self.shared.handler.on_emulation(emulation),
                Err(e) => warn!(error = %e, "undecodable emulation request dropped"),
            }
        } else if keys.is_probe(&m.channel) {
            self.received.record(&m.channel, &payload);
        }
    }
}
