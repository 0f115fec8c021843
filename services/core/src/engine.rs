//! Engines carry publications between nodes and keep history and presence.
//! A closed set: the in-process memory engine (one node) and Redis (standalone
//! or Cluster with sharded pub/sub). Each delivers what it receives to the
//! node's [`Handler`] (the gateway hub), per channel in offset order.

pub mod memory;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::channel::Channel;
use crate::control::{self, NodeInfo};
use crate::publication::{ClientInfo, Publication, RawJson, StreamPosition};
use crate::trace::TraceParent;

/// The `[engine]` configuration section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `redis://host:port` (or `rediss://`): standalone Redis.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster (sharded pub/sub).
    #[serde(default, deserialize_with = "crate::config::string_list")]
    pub redis_cluster: Vec<String>,
    /// Prefix of every Redis key and channel.
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
}

fn default_prefix() -> String {
    "herald".into()
}

impl Config {
    /// Whether a Redis engine is configured.
    pub fn is_redis(&self) -> bool {
        self.redis_url.is_some() || !self.redis_cluster.is_empty()
    }
}

/// Engine failures; all are worth retrying (error 100 to clients, 503 to the API).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The broker cannot be reached or is not ready.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The broker answered something unexpected.
    #[error("engine error: {0}")]
    Internal(String),
}

/// What a node does with what the engine receives. Implemented by the gateway hub;
/// calls must not block (they run on the engine's delivery path).
pub trait Handler: Send + Sync + 'static {
    /// A publication in a channel this node subscribed to, in offset order.
    fn on_publication(&self, channel: &str, publication: &Publication);
    /// Someone joined a channel.
    fn on_join(&self, channel: &str, info: &ClientInfo);
    /// Someone left a channel.
    fn on_leave(&self, channel: &str, info: &ClientInfo);
    /// A cluster-wide command.
    fn on_control(&self, command: &control::Command);
    /// Client commands for one of this node's emulation sessions, sent here
    /// by the node that received them (see [`Engine::send_to_node`]).
    fn on_emulation(&self, _emulation: control::Emulation) {}
    /// The node lost publications of a channel it cannot recover (history gone):
    /// subscribers must be told to resubscribe. Returns how many were told.
    fn on_unrecoverable(&self, channel: &str) -> u64;
    /// Whether any local connection still needs the channel (checked before unsubscribing).
    fn has_subscribers(&self, channel: &str) -> bool;
    /// This node, for `/api/info`.
    fn node_info(&self) -> NodeInfo;
    /// Local channels and their subscriber counts, for `/api/channels`: at most `limit`.
    fn channels(&self, limit: usize) -> HashMap<String, u64>;
    /// A number that changes whenever [`Handler::channels`] may answer
    /// differently; `None` when the handler does not keep one (every answer may differ).
    fn channels_version(&self) -> Option<u64> {
        None
    }
}

/// A node without connections (publisher role).
#[derive(Debug, Default)]
pub struct NoConnections {
    /// This node's description.
    pub info: NodeInfo,
}

impl Handler for NoConnections {
    fn on_publication(&self, _: &str, _: &Publication) {}
    fn on_join(&self, _: &str, _: &ClientInfo) {}
    fn on_leave(&self, _: &str, _: &ClientInfo) {}
    fn on_control(&self, _: &control::Command) {}
    fn on_unrecoverable(&self, _: &str) -> u64 {
        0
    }
    fn has_subscribers(&self, _: &str) -> bool {
        false
    }
    fn node_info(&self) -> NodeInfo {
        self.info.clone()
    }
    fn channels(&self, _: usize) -> HashMap<String, u64> {
        HashMap::new()
    }
    fn channels_version(&self) -> Option<u64> {
        Some(0)
    }
}

/// How long the first result of a keyed publish is kept: a repeat with the
/// same `idempotency_key` into the same channel within this time publishes
/// nothing and answers that result (Centrifugo's window).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(5 * 60);

/// Options of one publish.
#[derive(Debug, Default)]
pub struct PublishOptions {
    /// The publishing client.
    pub info: Option<ClientInfo>,
    /// Publisher tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Do not append to history even if the namespace keeps it.
    pub skip_history: bool,
    /// Publish at most once per channel and key within [`IDEMPOTENCY_TTL`]; a
    /// repeat answers the first publish's position (so a retry after a
    /// timeout cannot duplicate the publication).
    pub idempotency_key: Option<String>,
    /// The publishing span, when sampled: every delivering gateway continues its trace.
    pub trace: Option<TraceParent>,
}

/// A history read.
#[derive(Debug, Default, Clone)]
pub struct HistoryQuery {
    /// Only publications after this position (its epoch must match the stream's).
    pub since: Option<StreamPosition>,
    /// At most this many; `None` for all that are kept.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
}

/// What a history read returns.
#[derive(Debug, Default)]
pub struct History {
    /// Publications, in the requested order.
    pub publications: Vec<Publication>,
    /// The stream's current top position.
    pub position: StreamPosition,
}

/// Presence summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PresenceStats {
    /// Connections.
    pub num_clients: u64,
    /// Distinct users.
    pub num_users: u64,
}

/// The node's engine.
pub enum Engine {
    /// One process, in memory.
    Memory(memory::Memory),
    /// Redis or Redis Cluster.
    Redis(redis::Redis),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Memory(_) => "Engine::Memory",
            Engine::Redis(_) => "Engine::Redis",
        })
    }
}

// Redis futures are large state machines; boxing them keeps every caller's
// future (and so each connection's task) small.
macro_rules! dispatch {
    ($self:ident, $e:ident => $call:ident($($arg:expr),*)) => {
        match $self {
            Engine::Memory($e) => $e.$call($($arg),*).await,
            Engine::Redis($e) => Box::pin($e.$call($($arg),*)).await,
        }
    };
}

impl Engine {
    /// Starts the configured engine, delivering to `handler`; its background
    /// tasks run until [`Engine::close`].
    pub async fn start(
        config: &Config,
        handler: Arc<dyn Handler>,
        metrics: crate::Metrics,
    ) -> Result<Engine, EngineError> {
        Engine::start_under(config, handler, metrics, &CancellationToken::new()).await
    }

    /// Starts the configured engine, delivering to `handler`; its background
    /// tasks stop on a child of `parent` (or at [`Engine::close`], which must
    /// still be called to release connections).
    pub async fn start_under(
        config: &Config,
        handler: Arc<dyn Handler>,
        metrics: crate::Metrics,
        parent: &CancellationToken,
    ) -> Result<Engine, EngineError> {
        let cancel = parent.child_token();
        if config.is_redis() {
            Ok(Engine::Redis(
                redis::Redis::start(config, handler, metrics, cancel).await?,
            ))
        } else {
            // One process is the whole cluster.
            metrics.nodes.set(1);
            Ok(Engine::Memory(memory::Memory::start(handler, cancel)))
        }
    }

    /// Publishes into a channel; with history, answers the new position once stored.
    pub async fn publish(
        &self,
        channel: &Channel,
        data: RawJson,
        options: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        dispatch!(self, e => publish(channel, data, options))
    }

    /// Makes this node receive a channel's publications; idempotent, resolves once active.
    pub async fn subscribe(&self, channel: &Channel) -> Result<(), EngineError> {
        dispatch!(self, e => subscribe(channel))
    }

    /// A channel's position as this node has delivered it, when that answers a
    /// subscribe exactly without asking storage: call it only after the
    /// subscriber is registered for live publications and [`Engine::subscribe`]
    /// resolved. `None` means read it with [`Engine::history`] (the embedded
    /// engine always answers that in-process).
    pub fn live_position(&self, channel: &Channel) -> Option<StreamPosition> {
        match self {
            Engine::Memory(_) => None,
            Engine::Redis(e) => e.live_position(channel),
        }
    }

    /// Stops receiving a channel (the engine may debounce and re-check `has_subscribers`).
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        dispatch!(self, e => unsubscribe(channel))
    }

    /// Reads a channel's history.
    pub async fn history(
        &self,
        channel: &Channel,
        query: HistoryQuery,
    ) -> Result<History, EngineError> {
        dispatch!(self, e => history(channel, query))
    }

    /// Drops a channel's publications, keeping its position.
    pub async fn remove_history(&self, channel: &Channel) -> Result<(), EngineError> {
        dispatch!(self, e => remove_history(channel))
    }

    /// Adds or refreshes a connection in a channel's presence.
    pub async fn add_presence(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => add_presence(channel, info))
    }

    /// Removes a connection from a channel's presence.
    pub async fn remove_presence(
        &self,
        channel: &Channel,
        client: &str,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => remove_presence(channel, client))
    }

    /// Who is in a channel.
    pub async fn presence(
        &self,
        channel: &Channel,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        dispatch!(self, e => presence(channel))
    }

    /// How many are in a channel.
    pub async fn presence_stats(&self, channel: &Channel) -> Result<PresenceStats, EngineError> {
        dispatch!(self, e => presence_stats(channel))
    }

    /// Tells a channel's subscribers on every node that someone joined.
    pub async fn publish_join(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => publish_join(channel, info))
    }

    /// Tells a channel's subscribers on every node that someone left.
    pub async fn publish_leave(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => publish_leave(channel, info))
    }

    /// Sends a command to every node.
    pub async fn publish_control(&self, command: &control::Command) -> Result<(), EngineError> {
        dispatch!(self, e => publish_control(command))
    }

    /// Sends client commands to the node `node` alone; false when no such node
    /// listens (in Redis Cluster a receiver cannot be counted: always true).
    pub async fn send_to_node(
        &self,
        node: &str,
        emulation: &control::Emulation,
    ) -> Result<bool, EngineError> {
        dispatch!(self, e => send_to_node(node, emulation))
    }

    /// Every live node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        dispatch!(self, e => nodes())
    }

    /// Channels with subscribers, over every node.
    pub async fn channels(&self) -> Result<HashMap<String, u64>, EngineError> {
        dispatch!(self, e => channels())
    }

    /// Whether the engine can deliver (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Engine::Memory(e) => e.is_ready(),
            Engine::Redis(e) => e.is_ready(),
        }
    }

    /// Stops background work and closes connections.
    pub async fn close(&self) {
        dispatch!(self, e => close())
    }
}
