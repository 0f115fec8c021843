//! The memory engine's presence: per channel, connection id to client info,
//! in sharded maps; an entry lives until removed (the process is the only node).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{shard_of, Memory};
use crate::channel::Channel;
use crate::engine::{EngineError, PresenceStats};
use crate::publication::ClientInfo;

impl Memory {
    fn with_presence<T>(
        &self,
        channel: &Channel,
        f: impl FnOnce(&mut HashMap<Arc<str>, HashMap<String, ClientInfo>>) -> T,
    ) -> T {
        f(&mut self.inner.presence[shard_of(channel.name())]
            .lock()
            .expect("poisoned"))
    }

    /// See [`crate::Engine::add_presence`].
    pub async fn add_presence(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        self.with_presence(channel, |p| {
            p.entry(channel.name_arc().clone())
                .or_default()
                .insert(info.client.clone(), info.clone());
        });
        Ok(())
    }

    /// See [`crate::Engine::remove_presence`].
    pub async fn remove_presence(
        &self,
        channel: &Channel,
        client: &str,
    ) -> Result<(), EngineError> {
        self.with_presence(channel, |p| {
            if let Some(members) = p.get_mut(channel.name()) {
                members.remove(client);
                if members.is_empty() {
                    p.remove(channel.name());
                }
            }
        });
        Ok(())
    }

    /// See [`crate::Engine::presence`].
    pub async fn presence(
        &self,
        channel: &Channel,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        Ok(self.with_presence(channel, |p| {
            p.get(channel.name()).cloned().unwrap_or_default()
        }))
    }

    /// See [`crate::Engine::presence_stats`].
    pub async fn presence_stats(&self, channel: &Channel) -> Result<PresenceStats, EngineError> {
        Ok(self.with_presence(channel, |p| {
            let members = p.get(channel.name());
            let num_clients = members.map_or(0, |m| m.len()) as u64;
            let num_users = members.map_or(0, |m| {
                m.values()
                    .map(|i| i.user.as_str())
                    .collect::<HashSet<_>>()
                    .len()
            }) as u64;
            PresenceStats {
                num_clients,
                num_users,
            }
        }))
    }
}
