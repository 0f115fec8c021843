//! Node-level subscriptions over a small pool of subscriber connections (a
//! channel is hashed to one). Per connection one task issues every (S)SUBSCRIBE
//! and UNSUBSCRIBE, so they never overtake each other: requests that arrive
//! together share one command, unsubscribes are debounced and re-checked, and
//! after a reconnect everything is subscribed again and gap-checked. This
//! module keeps the registry; the per-connection task is in `task`, incoming
//! traffic and the commands themselves in `inbox`.

mod inbox;
mod task;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::EventInterface;
use fred::types::Message as FredMessage;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::Shared;
use super::keys::spread;
use super::sync::Workers;
use crate::engine::EngineError;
use inbox::Received;

/// How long a channel stays subscribed after its last local subscriber left.
const UNSUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(200);
/// Most channels in one SUBSCRIBE command.
pub(super) const BATCH: usize = 512;
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
const REGISTRY_SHARDS: usize = 64;

type Waiter = oneshot::Sender<Result<(), EngineError>>;

struct Entry {
    conn: usize,
    history: bool,
    active: bool,
    waiters: Vec<Waiter>,
    unsub_at: Option<Instant>,
}

/// Connection events after which every subscription is sent again.
struct Resets {
    reconnects: broadcast::Receiver<fred::types::config::Server>,
    topology: broadcast::Receiver<Vec<fred::types::ClusterStateChange>>,
}

/// One subscriber connection.
pub(super) struct Conn {
    pub(super) client: Client,
    requests: mpsc::Sender<Arc<str>>,
    due: Mutex<Vec<(Arc<str>, Instant)>>,
    /// Channels outside the registry (control, probes): pub/sub name, sharded.
    statics: Mutex<Vec<(String, bool)>>,
    /// Subscriptions restored since the last reconnect.
    pub(super) healthy: AtomicBool,
}

/// The node's subscriptions.
pub(super) struct Subscriptions {
    pub(super) shared: Arc<Shared>,
    pub(super) conns: Vec<Conn>,
    registry: Vec<Mutex<HashMap<Arc<str>, Entry>>>,
    pub(super) workers: Workers,
    pub(super) received: Received,
}

impl Subscriptions {
    /// Starts the per-connection tasks for already connected `clients`; `messages`
    /// are their message receivers, taken before anything was subscribed.
    pub(super) fn start(
        shared: Arc<Shared>,
        clients: Vec<(Client, broadcast::Receiver<FredMessage>)>,
        workers: Workers,
        tracker: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) -> Arc<Subscriptions> {
        let mut conns = Vec::new();
        let mut tasks = Vec::new();
        for (client, messages) in clients {
            let (tx, rx) = mpsc::channel(4 * BATCH);
            let reconnects = Resets {
                reconnects: client.reconnect_rx(),
                topology: client.cluster_change_rx(),
            };
            let errors = client.error_rx();
            conns.push(Conn {
                client,
                requests: tx,
                due: Mutex::new(Vec::new()),
                statics: Mutex::new(Vec::new()),
                healthy: AtomicBool::new(true),
            });
            tasks.push((rx, messages, reconnects, errors));
        }
        let subs = Arc::new(Subscriptions {
            shared,
            conns,
            registry: (0..REGISTRY_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            workers,
            received: Received::default(),
        });
        for (k, (rx, messages, reconnects, errors)) in tasks.into_iter().enumerate() {
            tracker.spawn(subs.clone().run(k, rx, reconnects, cancel.clone()));
            tracker.spawn(subs.clone().watch(k, errors, cancel.clone()));
            tracker.spawn(subs.clone().read(k, messages, cancel.clone()));
        }
        subs
    }

    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.registry[spread(channel) % REGISTRY_SHARDS]
            .lock()
            .expect("poisoned")
    }

    /// Subscribes a channel; resolves once Redis confirmed it and its start position is known.
    pub(super) async fn subscribe(
        &self,
        channel: &Arc<str>,
        history: bool,
    ) -> Result<(), EngineError> {
        let conn = spread(channel) % self.conns.len();
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut shard = self.shard(channel);
            match shard.get_mut(channel) {
                Some(e) if e.active => {
                    e.unsub_at = None;
                    return Ok(());
                }
                Some(e) => {
                    e.unsub_at = None;
                    e.waiters.push(tx);
                    false
                }
                None => {
                    let entry = Entry {
                        conn,
                        history,
                        active: false,
                        waiters: vec![tx],
                        unsub_at: None,
                    };
                    shard.insert(channel.clone(), entry);
                    true
                }
            }
        };
        let closed = || EngineError::Unavailable("engine closed".into());
        if first {
            self.conns[conn]
                .requests
                .send(channel.clone())
                .await
                .map_err(|_| closed())?;
        }
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(EngineError::Unavailable(
                "redis subscribe: timed out".into(),
            )),
        }
    }

    /// Schedules an unsubscribe; it happens after [`UNSUBSCRIBE_DELAY`] unless the
    /// channel was subscribed again or still has local subscribers.
    pub(super) fn unsubscribe(&self, channel: &str) {
        let deadline = Instant::now() + UNSUBSCRIBE_DELAY;
        let scheduled = {
            let mut shard = self.shard(channel);
            match shard.get_mut(channel) {
                Some(e) if e.unsub_at.is_none() => {
                    e.unsub_at = Some(deadline);
                    Some(e.conn)
                }
                _ => None,
            }
        };
        if let Some(conn) = scheduled {
            self.conns[conn]
                .due
                .lock()
                .expect("poisoned")
                .push((Arc::from(channel), deadline));
        }
    }

    /// Subscribes a channel outside the registry on connection `conn` and keeps it across reconnects.
    pub(super) async fn add_static(
        &self,
        conn: usize,
        name: String,
        sharded: bool,
    ) -> Result<(), EngineError> {
        self.conns[conn]
            .statics
            .lock()
            .expect("poisoned")
            .push((name.clone(), sharded));
        let result = self.send(conn, vec![name], sharded, true).await.pop();
        let result = result.unwrap_or(Ok(()));
        if result.is_err() {
            // Kept in `statics`: the next restore subscribes it.
            self.conns[conn].healthy.store(false, Ordering::SeqCst);
        }
        result
    }

    /// The static channels of connection `conn`.
    pub(super) fn statics(&self, conn: usize) -> Vec<(String, bool)> {
        self.conns[conn].statics.lock().expect("poisoned").clone()
    }

    /// Every channel with a Redis subscription (or one on its way).
    pub(super) fn channel_count(&self) -> usize {
        self.registry
            .iter()
            .map(|s| s.lock().expect("poisoned").len())
            .sum()
    }
}
