//! The task of one subscriber connection: it alone sends that connection's
//! (S)SUBSCRIBE and UNSUBSCRIBE commands, so they never overtake each other.
//! Requests that arrive together share one command, unsubscribes are run when
//! due (and re-checked), and after a reconnect everything is subscribed again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use fred::interfaces::ClientLike;
use futures_util::future::join_all;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Resets, Subscriptions, BATCH, TICK};
use crate::engine::redis::sync::Event;

impl Subscriptions {
    /// Runs connection `k`'s commands until cancelled.
    pub(super) async fn run(
        self: Arc<Self>,
        k: usize,
        mut requests: mpsc::Receiver<Arc<str>>,
        mut resets: Resets,
        cancel: CancellationToken,
    ) {
        let mut topology_open = true;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(first) = requests.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match requests.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    self.subscribe_batch(k, batch).await;
                }
                // Every subscription must be sent again; the next tick does it once for
                // the burst of events a reconnect brings (one per server, topology changes).
                r = resets.reconnects.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    r => {
                        if r.is_ok() {
                            self.shared.metrics.reconnects.inc();
                        }
                        self.conns[k].healthy.store(false, Ordering::SeqCst);
                    }
                },
                // Slots moved: sharded subscriptions must follow them to their new owners.
                r = resets.topology.recv(), if topology_open => match r {
                    Err(broadcast::error::RecvError::Closed) => topology_open = false,
                    _ => self.conns[k].healthy.store(false, Ordering::SeqCst),
                },
                _ = tick.tick() => {
                    if !self.conns[k].healthy.load(Ordering::SeqCst) {
                        self.restore(k).await;
                    }
                    self.unsubscribe_due(k).await;
                }
            }
        }
    }

    async fn subscribe_batch(&self, k: usize, batch: Vec<Arc<str>>) {
        let names = batch.iter().map(|c| self.shared.keys.pubsub(c)).collect();
        let subscribed = self.send(k, names, self.shared.cluster, true).await;
        let history: Vec<bool> = batch
            .iter()
            .map(|c| self.shard(c).get(c).is_some_and(|e| e.history))
            .collect();
        let positions = join_all(batch.iter().zip(&subscribed).zip(&history).map(
            |((c, s), h)| async move {
                match (s, h) {
                    (Err(e), _) => Err(e.clone()),
                    (Ok(()), true) => self.shared.position(c).await.map(Some),
                    (Ok(()), false) => Ok(None),
                }
            },
        ))
        .await;
        let mut undo = Vec::new();
        for ((channel, subscribed), position) in batch.iter().zip(subscribed).zip(positions) {
            let outcome = match position {
                Ok(Some(position)) => {
                    self.workers
                        .send(
                            channel,
                            Event::Init {
                                channel: channel.clone(),
                                position,
                            },
                        )
                        .await;
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    if subscribed.is_ok() {
                        undo.push(channel.clone());
                    }
                    Err(e)
                }
            };
            let waiters = {
                let mut shard = self.shard(channel);
                match outcome {
                    Ok(()) => shard.get_mut(channel).map(|e| {
                        e.active = true;
                        std::mem::take(&mut e.waiters)
                    }),
                    Err(_) => shard.remove(channel).map(|e| e.waiters),
                }
            };
            for w in waiters.unwrap_or_default() {
                let _ = w.send(outcome.clone());
            }
        }
        self.drop_channels(k, undo).await;
    }

    async fn unsubscribe_due(&self, k: usize) {
        let now = Instant::now();
        let ready: Vec<Arc<str>> = {
            let mut due = self.conns[k].due.lock().expect("poisoned");
            let (ready, later): (Vec<_>, Vec<_>) = due.drain(..).partition(|(_, at)| *at <= now);
            *due = later;
            ready.into_iter().map(|(c, _)| c).collect()
        };
        let mut gone = Vec::new();
        let mut again = Vec::new();
        for channel in ready {
            // Asked without holding our lock: the hub may call back into `subscribe`.
            let needed = self.shared.handler.has_subscribers(&channel);
            let mut shard = self.shard(&channel);
            let Some(entry) = shard.get_mut(&channel) else {
                continue;
            };
            match entry.unsub_at {
                None => {}
                Some(_) if needed => entry.unsub_at = None,
                Some(at) if at > now || !entry.active => {
                    again.push((channel.clone(), at.max(now + TICK)))
                }
                Some(_) => {
                    shard.remove(&channel);
                    gone.push(channel.clone());
                }
            }
        }
        self.conns[k].due.lock().expect("poisoned").extend(again);
        self.drop_channels(k, gone).await;
    }

    async fn drop_channels(&self, k: usize, channels: Vec<Arc<str>>) {
        if channels.is_empty() {
            return;
        }
        let names = channels
            .iter()
            .map(|c| self.shared.keys.pubsub(c))
            .collect();
        for r in self.send(k, names, self.shared.cluster, false).await {
            if let Err(e) = r {
                debug!(error = %e, "unsubscribe failed");
            }
        }
        for channel in channels {
            self.workers
                .send(&channel.clone(), Event::Forget { channel })
                .await;
        }
    }

    /// Subscribes everything of connection `k` again, then gap-checks its channels.
    async fn restore(&self, k: usize) {
        if !self.conns[k].client.is_connected() {
            return;
        }
        let mut channels = Vec::new();
        for shard in &self.registry {
            let shard = shard.lock().expect("poisoned");
            channels.extend(
                shard
                    .iter()
                    .filter(|(_, e)| e.conn == k)
                    .map(|(c, _)| self.shared.keys.pubsub(c)),
            );
        }
        let mut results = self.send(k, channels, self.shared.cluster, true).await;
        for (name, sharded) in self.statics(k) {
            results.extend(self.send(k, vec![name], sharded, true).await);
        }
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            warn!(conn = k, error = %e, "restoring subscriptions failed, retrying");
            return;
        }
        debug!(conn = k, "subscriptions restored");
        self.conns[k].healthy.store(true, Ordering::SeqCst);
        self.workers.resync(Some(k)).await;
    }
}
