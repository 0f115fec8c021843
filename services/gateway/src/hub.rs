//! The hub: this node's connections and their channel subscriptions, sharded
//! by key so that no global lock sits on the fan-out path. It is the engine's
//! [`Handler`]: a publication is encoded once and the same buffer is queued to
//! every local subscriber. It also knows when the node drains: sessions
//! that would register after the drain began are refused, and
//! [`Hub::drained`] resolves when the last session has ended.

use std::collections::hash_map::DefaultHasher;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use herald_core::protocol::Disconnect;
use herald_core::Metrics;
use tokio::sync::Notify;

use crate::outbox::Outbox;
use crate::subscribers::Subscribers;

pub mod emulation;
mod fanout;
mod traced;

const SHARDS: usize = 64;

/// A connected session as the hub knows it.
#[derive(Debug, Clone)]
struct Member {
    conn: u64,
    client: Arc<str>,
    outbox: Arc<Outbox>,
}

/// What [`Hub::add_session`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Registered.
    Added,
    /// Not registered: the node drains.
    Draining,
    /// Not registered: the user holds `client.max_connections_per_user` here.
    UserFull,
}

/// Local connections and subscriptions.
pub struct Hub {
    channels: Vec<RwLock<HashMap<Arc<str>, Subscribers>>>,
    users: Vec<Mutex<HashMap<Arc<str>, Vec<Member>>>>,
    /// Sessions not registered under a user yet (no `connect` so far), by connection.
    pending: Vec<Mutex<HashMap<u64, Arc<Outbox>>>>,
    /// Open sessions, registered or not.
    live: AtomicUsize,
    /// Woken when `live` drops to zero.
    emptied: Notify,
    /// Changes whenever a channel's subscriber count does (see [`herald_core::engine::Handler::channels_version`]).
    channels_version: AtomicU64,
    /// Set once, when the drain begins; read under the shard locks it guards.
    draining: AtomicBool,
    metrics: Metrics,
    /// Sessions of the emulation transports, by session id.
    emulation: emulation::Sessions,
    uid: String,
    name: String,
    started: Instant,
}

fn pending_shard(conn: u64) -> usize {
    (conn % SHARDS as u64) as usize
}

fn shard<K: Hash + ?Sized>(key: &K) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Hub {
    /// An empty hub for the node `name`.
    pub fn new(name: String, metrics: Metrics) -> Hub {
        Hub {
            channels: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            users: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            pending: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            live: AtomicUsize::new(0),
            emptied: Notify::new(),
            channels_version: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            metrics,
            emulation: emulation::Sessions::default(),
            uid: uuid::Uuid::new_v4().to_string(),
            name,
            started: Instant::now(),
        }
    }

    /// This node's unique id (the `node` of emulation connect replies).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// This node's emulation sessions.
    pub fn emulation(&self) -> &emulation::Sessions {
        &self.emulation
    }

    /// Adds a subscriber; true when it is the channel's first on this node.
    pub fn subscribe(&self, channel: &Arc<str>, conn: u64, outbox: Arc<Outbox>) -> bool {
        let mut shard = self.channels[shard(&**channel)].write().expect("poisoned");
        let (added, first) = match shard.entry(channel.clone()) {
            Entry::Occupied(subscribers) => (subscribers.into_mut().insert(conn, outbox), false),
            Entry::Vacant(slot) => {
                slot.insert(Subscribers::new(conn, outbox));
                (true, true)
            }
        };
        drop(shard);
        if added {
            self.channels_version.fetch_add(1, Ordering::Release);
            let ns = self.metrics.namespace(channel);
            ns.subscriptions.inc();
            if first {
                ns.channels.inc();
            }
        }
        first
    }

    /// Removes a subscriber; true when the channel has no local subscriber left.
    pub fn unsubscribe(&self, channel: &str, conn: u64) -> bool {
        let mut shard = self.channels[shard(channel)].write().expect("poisoned");
        let Some(subscribers) = shard.get_mut(channel) else {
            return false;
        };
        let (removed, empty) = subscribers.remove(conn);
        let ns = self.metrics.namespace(channel);
        if removed {
            self.channels_version.fetch_add(1, Ordering::Release);
            ns.subscriptions.dec();
        }
        if empty {
            shard.remove(channel);
            ns.channels.dec();
            return true;
        }
        false
    }

    /// Counts a new connection's session and keeps its outbox within the
    /// drain's reach until it registers. During a drain the session is told
    /// to go at once. Pair with [`Hub::end_session`].
    pub fn open_session(&self, conn: u64, outbox: &Arc<Outbox>) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let mut pending = self.pending[pending_shard(conn)].lock().expect("poisoned");
        if self.draining.load(Ordering::SeqCst) {
            drop(pending);
            outbox.close(Disconnect::SHUTDOWN);
            return;
        }
        pending.insert(conn, outbox.clone());
    }

    /// Registers a connected session under its user (empty for anonymous),
    /// unless the node drains (the session must close with
    /// [`Disconnect::SHUTDOWN`]) or the user already has `max_per_user`
    /// sessions here (0: no cap; anonymous sessions are not capped).
    pub fn add_session(
        &self,
        user: &Arc<str>,
        conn: u64,
        client: Arc<str>,
        outbox: Arc<Outbox>,
        max_per_user: usize,
    ) -> Registration {
        let mut shard = self.users[shard(&**user)].lock().expect("poisoned");
        // Checked under the lock the drain's snapshot takes: a session either
        // is in the snapshot or sees the flag.
        if self.draining.load(Ordering::SeqCst) {
            return Registration::Draining;
        }
        if max_per_user > 0
            && !user.is_empty()
            && shard.get(user).is_some_and(|m| m.len() >= max_per_user)
        {
            return Registration::UserFull;
        }
        let members = shard.entry(user.clone()).or_default();
        if members.is_empty() {
            // Most users have one connection per node: no room for more until a second comes.
            members.reserve_exact(1);
        }
        members.push(Member {
            conn,
            client,
            outbox,
        });
        drop(shard);
        self.pending[pending_shard(conn)]
            .lock()
            .expect("poisoned")
            .remove(&conn);
        Registration::Added
    }

    /// Forgets a session opened with [`Hub::open_session`]: registered under
    /// `user`, or still pending when `None`.
    pub fn end_session(&self, user: Option<&str>, conn: u64) {
        match user {
            Some(user) => {
                let mut shard = self.users[shard(user)].lock().expect("poisoned");
                if let Some(members) = shard.get_mut(user) {
                    members.retain(|m| m.conn != conn);
                    if members.is_empty() {
                        shard.remove(user);
                    }
                }
            }
            None => {
                let mut pending = self.pending[pending_shard(conn)].lock().expect("poisoned");
                pending.remove(&conn);
            }
        }
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.emptied.notify_waiters();
        }
    }

    /// Begins the drain: from now on no session registers (see
    /// [`Hub::add_session`]). Returns every open session's outbox.
    pub fn start_drain(&self) -> Vec<Arc<Outbox>> {
        self.draining.store(true, Ordering::SeqCst);
        let mut outboxes = self.all_sessions();
        for shard in &self.pending {
            outboxes.extend(shard.lock().expect("poisoned").values().cloned());
        }
        outboxes
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once no session is open (at once when none is).
    pub async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check: a drop to zero right after it still wakes us.
            emptied.as_mut().enable();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Sessions open now, registered or not.
    pub fn num_sessions(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Every registered session's outbox.
    pub fn all_sessions(&self) -> Vec<Arc<Outbox>> {
        self.users
            .iter()
            .flat_map(|s| {
                s.lock()
                    .expect("poisoned")
                    .values()
                    .flatten()
                    .map(|m| m.outbox.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Open sessions.
    pub fn num_clients(&self) -> u64 {
        self.users
            .iter()
            .map(|s| {
                s.lock()
                    .expect("poisoned")
                    .values()
                    .map(Vec::len)
                    .sum::<usize>() as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests;
