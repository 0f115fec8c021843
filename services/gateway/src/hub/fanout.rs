//! What the engine hands the hub: publications, joins and leaves fanned out
//! to the local subscribers (encoded once, shared by every queue), control
//! commands for local sessions, emulation frames other nodes sent on, and the
//! node's figures.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use herald_core::control::{self, NodeInfo};
use herald_core::engine::Handler;
use herald_core::protocol::Disconnect;
use herald_core::publication::{
    encode_join_push, encode_leave_push, encode_publication_push, ClientInfo, Publication,
};

use super::emulation::Delivery;
use super::{shard, Hub};
use crate::frame::ChannelPush;
use crate::subscribers::Subscribers;

impl Hub {
    /// Queues one push, encoded only if the channel has local subscribers, to each of them.
    fn fan_out(
        &self,
        channel: &str,
        offset: u64,
        time: Option<i64>,
        encode: impl FnOnce() -> bytes::Bytes,
    ) -> bool {
        let shard = self.channels[shard(channel)].read().expect("poisoned");
        let Some((name, subscribers)) = shard.get_key_value(channel) else {
            return false;
        };
        let push = Arc::new(ChannelPush::new(name.clone(), offset, time, encode()));
        match subscribers {
            Subscribers::One(_, outbox) => {
                outbox.send_channel(&push);
            }
            Subscribers::Many(map) => {
                for outbox in map.values() {
                    outbox.send_channel(&push);
                }
            }
        }
        true
    }

    /// Queues a publication to the channel's local subscribers.
    pub(super) fn deliver(&self, channel: &str, publication: &Publication) {
        let encode = || encode_publication_push(channel, publication);
        let time = (publication.time != 0).then_some(publication.time);
        self.fan_out(channel, publication.offset, time, encode);
    }
}

impl Handler for Hub {
    fn on_publication(&self, channel: &str, publication: &Publication) {
        match publication.trace.as_deref() {
            None => self.deliver(channel, publication),
            Some(parent) => self.deliver_traced(channel, publication, parent),
        }
    }

    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.fan_out(channel, 0, None, || encode_join_push(channel, info));
    }

    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.fan_out(channel, 0, None, || encode_leave_push(channel, info));
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

    fn on_emulation(&self, emulation: control::Emulation) {
        let outcome = match self.emulation.deliver(&emulation.session, emulation.data) {
            Delivery::Queued => "received",
            Delivery::Unknown => "unknown_session",
            Delivery::Busy => "busy",
        };
        self.metrics.emulation_request(outcome);
    }

    fn on_unrecoverable(&self, channel: &str) -> u64 {
        let shard = self.channels[shard(channel)].read().expect("poisoned");
        let outboxes = shard.get(channel).into_iter().flat_map(|s| s.outboxes());
        outboxes
            .filter(|outbox| outbox.close(Disconnect::INSUFFICIENT_STATE))
            .count() as u64
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

    fn channels(&self, limit: usize) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for s in &self.channels {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let s = s.read().expect("poisoned");
            out.extend(
                s.iter()
                    .take(room)
                    .map(|(k, v)| (k.to_string(), v.len() as u64)),
            );
        }
        out
    }

    fn channels_version(&self) -> Option<u64> {
        Some(self.channels_version.load(Ordering::Acquire))
    }
}
