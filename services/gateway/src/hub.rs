//! The hub: this node's connections and their channel subscriptions, sharded
//! by key so that no global lock sits on the fan-out path. It is the engine's
//! [`Handler`]: a publication is encoded once and the same buffer is queued to
//! every local subscriber.

use std::collections::hash_map::DefaultHasher;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use herald_core::control::{self, NodeInfo};
use herald_core::engine::Handler;
use herald_core::protocol::Disconnect;
use herald_core::publication::{
    encode_join_push, encode_leave_push, encode_publication_push, ClientInfo, Publication,
};
use herald_core::Metrics;

use crate::outbox::Outbox;
use crate::subscribers::Subscribers;

const SHARDS: usize = 64;

/// A connected session as the hub knows it.
#[derive(Debug, Clone)]
struct Member {
    conn: u64,
    client: Arc<str>,
    outbox: Arc<Outbox>,
}

/// Local connections and subscriptions.
pub struct Hub {
    channels: Vec<RwLock<HashMap<Arc<str>, Subscribers>>>,
    users: Vec<Mutex<HashMap<Arc<str>, Vec<Member>>>>,
    metrics: Metrics,
    uid: String,
    name: String,
    started: Instant,
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
            metrics,
            uid: uuid::Uuid::new_v4().to_string(),
            name,
            started: Instant::now(),
        }
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
        if added {
            self.metrics.subscriptions.inc();
        }
        if first {
            self.metrics.channels.inc();
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
        if removed {
            self.metrics.subscriptions.dec();
        }
        if empty {
            shard.remove(channel);
            self.metrics.channels.dec();
            return true;
        }
        false
    }

    /// Registers a connected session under its user (empty for anonymous).
    pub fn add_session(&self, user: &Arc<str>, conn: u64, client: Arc<str>, outbox: Arc<Outbox>) {
        let mut shard = self.users[shard(&**user)].lock().expect("poisoned");
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
    }

    /// Forgets a session.
    pub fn remove_session(&self, user: &str, conn: u64) {
        let mut shard = self.users[shard(user)].lock().expect("poisoned");
        if let Some(members) = shard.get_mut(user) {
            members.retain(|m| m.conn != conn);
            if members.is_empty() {
                shard.remove(user);
            }
        }
    }

    /// Every session's outbox (for draining).
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

    /// Queues one frame, encoded only if the channel has local subscribers, to each of them.
    fn fan_out(&self, channel: &str, offset: u64, encode: impl FnOnce() -> bytes::Bytes) -> bool {
        let shard = self.channels[shard(channel)].read().expect("poisoned");
        let Some(subscribers) = shard.get(channel) else {
            return false;
        };
        let frame = encode();
        match subscribers {
            Subscribers::One(_, outbox) => {
                outbox.send_channel(channel, offset, &frame);
            }
            Subscribers::Many(map) => {
                for outbox in map.values() {
                    outbox.send_channel(channel, offset, &frame);
                }
            }
        }
        self.metrics.deliveries.inc_by(subscribers.len() as u64);
        true
    }
}

impl Handler for Hub {
    fn on_publication(&self, channel: &str, publication: &Publication) {
        let encode = || encode_publication_push(channel, publication);
        if self.fan_out(channel, publication.offset, encode) && publication.time > 0 {
            let lag_ms = (herald_core::now_ms() - publication.time).max(0);
            self.metrics
                .delivery_lag_seconds
                .observe(lag_ms as f64 / 1000.0);
        }
    }

    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.fan_out(channel, 0, || encode_join_push(channel, info));
    }

    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.fan_out(channel, 0, || encode_leave_push(channel, info));
    }

    fn on_control(&self, command: &control::Command) {
        let user = command.user();
        let shard = self.users[shard(user)].lock().expect("poisoned");
        for member in shard.get(user).into_iter().flatten() {
            if command.client().is_none_or(|c| c == &*member.client) {
                member.outbox.push_control(command.clone());
            }
        }
    }

    fn on_unrecoverable(&self, channel: &str) {
        let shard = self.channels[shard(channel)].read().expect("poisoned");
        for outbox in shard.get(channel).into_iter().flat_map(|s| s.outboxes()) {
            outbox.close(Disconnect::INSUFFICIENT_STATE);
        }
    }

    fn has_subscribers(&self, channel: &str) -> bool {
        self.channels[shard(channel)]
            .read()
            .expect("poisoned")
            .contains_key(channel)
    }

    fn node_info(&self) -> NodeInfo {
        let (mut num_channels, mut num_subs) = (0, 0);
        for s in &self.channels {
            let s = s.read().expect("poisoned");
            num_channels += s.len() as u64;
            num_subs += s.values().map(|v| v.len() as u64).sum::<u64>();
        }
        let num_users = self
            .users
            .iter()
            .map(|s| s.lock().expect("poisoned").len() as u64)
            .sum();
        NodeInfo {
            uid: self.uid.clone(),
            name: self.name.clone(),
            version: herald_core::VERSION.to_owned(),
            num_clients: self.num_clients(),
            num_users,
            num_channels,
            num_subs,
            uptime: self.started.elapsed().as_secs(),
        }
    }

    fn channels(&self) -> HashMap<String, u64> {
        self.channels
            .iter()
            .flat_map(|s| {
                s.read()
                    .expect("poisoned")
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.len() as u64))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn fans_out_one_shared_frame_to_every_subscriber() {
        let hub = Hub::new("n".into(), Metrics::new());
        let ch: Arc<str> = Arc::from("stock:A");
        let a = Outbox::new(4);
        let b = Outbox::new(4);
        assert!(hub.subscribe(&ch, 1, a.clone()));
        assert!(!hub.subscribe(&ch, 2, b.clone()));
        let p = Publication {
            offset: 1,
            data: RawValue::from_string("1".into()).unwrap(),
            info: None,
            tags: None,
            time: 0,
        };
        hub.on_publication("stock:A", &p);
        let fa = a.take_frames().into_iter().next().unwrap();
        let fb = b.take_frames().into_iter().next().unwrap();
        assert_eq!(fa.as_ptr(), fb.as_ptr(), "one buffer shared by all");
        assert!(!hub.unsubscribe("stock:A", 1));
        assert!(hub.unsubscribe("stock:A", 2));
        assert!(!hub.has_subscribers("stock:A"));
    }
}
