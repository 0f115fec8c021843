//! The Redis engine: standalone Redis, or Redis Cluster with sharded pub/sub.
//! Publications are stored and published by one script call per batch
//! (`batch`, `scripts`); nodes subscribe channels over a few connections
//! (`pubsub`) and deliver them in offset order, filling gaps from history
//! (`sync`); readiness is probed end to end (`probe`); node heartbeats serve
//! `/api/info` (`nodes`).

mod batch;
mod coalesce;
mod conn;
mod envelope;
mod keys;
mod metrics;
mod nodes;
mod ops;
mod positions;
mod probe;
mod pubsub;
mod scripts;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::{Config, EngineError, Handler, History, HistoryQuery, PresenceStats, PublishOptions};
use crate::channel::Channel;
use crate::control::{self, NodeInfo};
use crate::publication::{sanitize, ClientInfo, Publication, RawJson, StreamPosition};
use conn::Shared;
use pubsub::Subscriptions;

/// Subscriber connections; channels are hashed to one.
const SUBSCRIBERS: usize = 2;

/// The Redis engine.
pub struct Redis {
    shared: Arc<Shared>,
    /// Publications with history, sent in batches.
    batcher: batch::Batcher,
    /// Forward history reads of a channel gathered into one (recoveries).
    recoveries: coalesce::Coalescer,
    subs: Arc<Subscriptions>,
    ready: Arc<AtomicBool>,
    /// Stops the background tasks (a child of the node's token).
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Set by the first [`Redis::close`].
    closed: AtomicBool,
}

impl Redis {
    /// Connects, subscribes the control and probe channels and starts the
    /// background tasks, which stop on `cancel`; fails if Redis cannot be reached.
    pub async fn start(
        config: &Config,
        handler: Arc<dyn Handler>,
        metrics: crate::Metrics,
        cancel: CancellationToken,
    ) -> Result<Redis, EngineError> {
        let keys = keys::Keys::new(&config.redis_prefix).map_err(EngineError::Internal)?;
        let (fred_config, cluster) = conn::fred_config(config)?;
        let pool = conn::connect_pool(&fred_config).await?;
        let scripts = scripts::Scripts::new();
        scripts
            .load(pool.next(), cluster)
            .await
            .map_err(|e| conn::map_error("script load", &e))?;
        let mut uid = handler.node_info().uid;
        if uid.is_empty() {
            uid = uuid::Uuid::new_v4().to_string();
        }
        let shared = Arc::new(Shared {
            pool,
            cluster,
            keys,
            scripts,
            handler,
            metrics: metrics::RedisMetrics::new(&metrics),
            uid,
            positions: positions::Positions::new(sync::WORKERS),
            channels_written: AtomicU64::new(nodes::NEVER_WRITTEN),
        });
        let tracker = TaskTracker::new();
        let mut clients: Vec<(fred::clients::Client, _)> = Vec::with_capacity(SUBSCRIBERS);
        for _ in 0..SUBSCRIBERS {
            let client = conn::subscriber(&fred_config)?;
            // Taken before connecting, so no message can slip past the reader.
            let messages = client.message_rx();
            if let Err(e) = conn::connect(&client).await {
                for (c, _) in &clients {
                    let _ = c.quit().await;
                }
                let _ = shared.pool.quit().await;
                return Err(e);
            }
            clients.push((client, messages));
        }
        let batcher = batch::Batcher::spawn(shared.clone(), &tracker, &cancel);
        let workers = sync::Workers::spawn(shared.clone(), SUBSCRIBERS, &tracker, &cancel);
        let subs = Subscriptions::start(shared.clone(), clients, workers, &tracker, &cancel);
        let engine = Redis {
            shared: shared.clone(),
            batcher,
            recoveries: coalesce::Coalescer::default(),
            subs: subs.clone(),
            ready: Arc::new(AtomicBool::new(true)),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            closed: AtomicBool::new(false),
        };
        let started = async {
            subs.add_static(0, shared.keys.control(), false).await?;
            subs.add_static(0, shared.keys.node(&shared.uid), false)
                .await?;
            probe::subscribe_probes(&shared, &subs).await?;
            shared.heartbeat().await
        };
        if let Err(e) = started.await {
            engine.close().await;
            return Err(e);
        }
        tracker.spawn(probe::run(
            shared.clone(),
            subs,
            engine.ready.clone(),
            cancel.clone(),
        ));
        tracker.spawn(nodes::run(shared, cancel));
        info!(cluster, "redis engine started");
        Ok(engine)
    }

    /// See [`super::Engine::publish`].
    pub async fn publish(
        &self,
        channel: &Channel,
        data: RawJson,
        options: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let key = options.idempotency_key;
        let publication = Publication {
            offset: 0,
            data: sanitize(data),
            info: options.info,
            tags: options.tags,
            time: crate::now_ms(),
            trace: options.trace.map(Box::new),
        };
        let opts = channel.options();
        if !opts.has_history() || options.skip_history {
            // Boxed: the batched path below is the common one, and these
            // command futures would make every publish's state several KiB.
            let message = envelope::encode_plain(&publication);
            match key {
                Some(key) => {
                    Box::pin(self.shared.publish_raw_once(channel.name(), message, &key)).await?
                }
                None => Box::pin(self.shared.publish_raw(channel.name(), message)).await?,
            }
            return Ok(StreamPosition::default());
        }
        let body = envelope::encode_publication(&publication);
        let trace = envelope::trace_arg(&publication);
        self.batcher
            .publish(batch::Stored {
                channel: channel.name_arc().clone(),
                body,
                history_size: opts.history_size,
                history_ttl: opts.history_ttl,
                idempotency_key: key,
                traceparent: trace,
            })
            .await
    }

    /// Makes this node receive a channel; resolves once the Redis subscription is
    /// active and (with history) the channel's current position is known.
    pub async fn subscribe(&self, channel: &Channel) -> Result<(), EngineError> {
        self.subs
            .subscribe(channel.name_arc(), channel.options().has_history())
            .await
    }

    /// See [`super::Engine::live_position`]: this node's delivery position of a
    /// channel with history it receives, when no delivery is under way.
    pub fn live_position(&self, channel: &Channel) -> Option<StreamPosition> {
        self.shared.positions.settled(channel.name())
    }

    /// Unsubscribes after a short delay, unless the channel is needed again by then.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.subs.unsubscribe(channel);
        Ok(())
    }

    /// See [`super::Engine::history`]. A `since` of another epoch yields no publications.
    pub async fn history(
        &self,
        channel: &Channel,
        query: HistoryQuery,
    ) -> Result<History, EngineError> {
        if !channel.options().has_history() {
            return Ok(History::default());
        }
        let read = match (&query.since, query.limit, query.reverse) {
            // A recovery: clients of a lost node come back together, one read serves them all.
            (Some(since), Some(limit), false) => {
                let shared = &self.shared;
                let name = channel.name_arc();
                self.recoveries
                    .read_after(name, since.offset, limit, |after, count| {
                        shared.read_after(name, after, count)
                    })
                    .await?
            }
            _ => {
                let start = match &query.since {
                    Some(p) => format!("{}-0", p.offset.saturating_add(1)),
                    None => "-".into(),
                };
                let count = query.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
                self.shared
                    .read(channel.name(), start, count, query.reverse)
                    .await?
            }
        };
        let stale = query.since.is_some_and(|p| p.epoch != read.position.epoch);
        Ok(History {
            publications: if stale { Vec::new() } else { read.publications },
            position: read.position,
        })
    }

    /// Deletes the channel's stream; its offset and epoch stay.
    pub async fn remove_history(&self, channel: &Channel) -> Result<(), EngineError> {
        self.shared.remove_stream(channel.name()).await
    }

    /// Adds or refreshes a connection (entries expire unless refreshed within a minute).
    pub async fn add_presence(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        self.shared.presence_add(channel.name(), info).await
    }

    /// See [`super::Engine::remove_presence`].
    pub async fn remove_presence(
        &self,
        channel: &Channel,
        client: &str,
    ) -> Result<(), EngineError> {
        self.shared.presence_remove(channel.name(), client).await
    }

    /// See [`super::Engine::presence`].
    pub async fn presence(
        &self,
        channel: &Channel,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let entries = self.shared.presence_entries(channel.name()).await?;
        Ok(entries.into_iter().map(|i| (i.client.clone(), i)).collect())
    }

    /// See [`super::Engine::presence_stats`].
    pub async fn presence_stats(&self, channel: &Channel) -> Result<PresenceStats, EngineError> {
        let entries = self.shared.presence_entries(channel.name()).await?;
        let users: HashSet<&str> = entries.iter().map(|i| i.user.as_str()).collect();
        Ok(PresenceStats {
            num_clients: entries.len() as u64,
            num_users: users.len() as u64,
        })
    }

    /// See [`super::Engine::publish_join`].
    pub async fn publish_join(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        let message = envelope::encode_presence_event(info, true);
        self.shared.publish_raw(channel.name(), message).await
    }

    /// See [`super::Engine::publish_leave`].
    pub async fn publish_leave(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        let message = envelope::encode_presence_event(info, false);
        self.shared.publish_raw(channel.name(), message).await
    }

    /// Publishes on the control channel; every node's handler gets it.
    pub async fn publish_control(&self, command: &control::Command) -> Result<(), EngineError> {
        let message = serde_json::to_string(command).expect("commands serialize");
        self.shared
            .send_pubsub(self.shared.keys.control(), message, false)
            .await
    }

    /// Publishes on the node's own channel (plain `PUBLISH`, as control):
    /// its receiver count tells whether the node listens (standalone only).
    pub async fn send_to_node(
        &self,
        node: &str,
        emulation: &control::Emulation,
    ) -> Result<bool, EngineError> {
        let message = serde_json::to_string(emulation).expect("emulation requests serialize");
        let client = self.shared.client()?;
        let publish = client.publish::<i64, _, _>(self.shared.keys.node(node), message);
        let receivers = self.shared.timed("publish", publish).await?;
        Ok(self.shared.cluster || receivers > 0)
    }

    /// Nodes that sent a heartbeat within the last three periods.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        self.shared.nodes().await
    }

    /// Channels over every node, from their last heartbeat (see `nodes`).
    pub async fn channels(&self) -> Result<HashMap<String, u64>, EngineError> {
        self.shared.all_channels().await
    }

    /// Connected, subscriptions in place, and the last probes came back.
    pub fn is_ready(&self) -> bool {
        !self.cancel.is_cancelled()
            && self.ready.load(Ordering::SeqCst)
            && probe::connected(&self.shared, &self.subs)
    }

    /// Stops the background tasks, removes this node's heartbeat and disconnects.
    pub async fn close(&self) {
        // The tasks may have stopped already (the node's token is cancelled
        // first); the heartbeat and the connections are still ours to release.
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
        if let Err(e) = self.shared.forget_node().await {
            debug!(error = %e, "removing the node heartbeat failed");
        }
        for c in &self.subs.conns {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.client.quit()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shared.pool.quit()).await;
        debug!(channels = self.subs.channel_count(), "redis engine closed");
    }
}
