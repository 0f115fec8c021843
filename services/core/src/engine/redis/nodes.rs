//! Node discovery for `/api/info` and `/api/channels`: every node writes its
//! `NodeInfo` into one hash every few seconds and its channel map (capped) into
//! a key of its own; readers drop nodes not seen for three heartbeats. The channel
//! survey is therefore up to one heartbeat old and lists at most
//! [`MAX_CHANNELS`] channels per node.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{HashesInterface, KeysInterface};
use fred::types::{Expiration, Value};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::conn::Shared;
use crate::control::NodeInfo;
use crate::engine::EngineError;

/// Heartbeat period.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node is gone after this long without a heartbeat.
const EXPIRY: Duration = Duration::from_secs(6);
/// Channels one node reports.
pub(super) const MAX_CHANNELS: usize = 10_000;
/// `Shared::channels_written` before the first write (no handler reports it as a version).
pub(super) const NEVER_WRITTEN: u64 = u64::MAX;

#[derive(Serialize, Deserialize)]
struct Beat {
    info: NodeInfo,
    seen: i64,
}

impl Shared {
    fn node_info(&self) -> NodeInfo {
        let mut info = self.handler.node_info();
        if info.uid.is_empty() {
            info.uid = self.uid.clone();
        }
        info
    }

    /// Writes this node's heartbeat and channel map. The map is written again
    /// only when the handler's channels changed since it was last written (or
    /// the key is gone); otherwise its expiry is extended.
    pub(super) async fn heartbeat(&self) -> Result<(), EngineError> {
        let client = self.client()?;
        let beat = Beat {
            info: self.node_info(),
            seen: crate::now_ms(),
        };
        let beat = serde_json::to_string(&beat).expect("heartbeats serialize");
        let ttl = EXPIRY.as_millis() as i64;
        let nodes = self.keys.nodes();
        self.timed(
            "heartbeat",
            client.hset::<Value, _, _>(&nodes, (self.uid.as_str(), beat)),
        )
        .await?;
        self.timed(
            "heartbeat",
            client.pexpire::<Value, _>(&nodes, ttl * 10, None),
        )
        .await?;
        let key = self.keys.node_channels(&self.uid);
        let version = self.handler.channels_version();
        let written = self.channels_written.load(Ordering::Relaxed);
        if version.is_some_and(|v| v == written)
            && self
                .timed("heartbeat", client.pexpire::<bool, _>(&key, ttl, None))
                .await?
        {
            return Ok(());
        }
        let channels =
            serde_json::to_string(&self.handler.channels(MAX_CHANNELS)).expect("maps serialize");
        self.timed(
            "heartbeat",
            client.set::<Value, _, _>(key, channels, Some(Expiration::PX(ttl)), None, false),
        )
        .await?;
        self.channels_written
            .store(version.unwrap_or(NEVER_WRITTEN), Ordering::Relaxed);
        Ok(())
    }

    /// Removes this node's heartbeat (on close).
    pub(super) async fn forget_node(&self) -> Result<(), EngineError> {
        let client = self.client()?;
        self.timed(
            "heartbeat",
            client.hdel::<Value, _, _>(self.keys.nodes(), self.uid.as_str()),
        )
        .await?;
        self.timed(
            "heartbeat",
            client.del::<Value, _>(self.keys.node_channels(&self.uid)),
        )
        .await?;
        Ok(())
    }

    /// Live nodes, ordered by uid; stale entries are removed on the way.
    pub(super) async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let client = self.client()?;
        let all: HashMap<String, String> = self
            .timed("nodes", client.hgetall(self.keys.nodes()))
            .await?;
        let oldest = crate::now_ms() - EXPIRY.as_millis() as i64;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (uid, beat) in all {
            match serde_json::from_str::<Beat>(&beat) {
                Ok(b) if b.seen >= oldest => live.push(b.info),
                _ => stale.push(uid),
            }
        }
        if !stale.is_empty() {
            if let Err(e) = self
                .timed(
                    "nodes",
                    client.hdel::<Value, _, _>(self.keys.nodes(), stale),
                )
                .await
            {
                debug!(error = %e, "removing stale nodes failed");
            }
        }
        live.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok(live)
    }

    /// Channels with subscribers over every live node, summed.
    pub(super) async fn all_channels(&self) -> Result<HashMap<String, u64>, EngineError> {
        let nodes = self.nodes().await?;
        let client = self.client()?;
        let reads = nodes.iter().map(|n| {
            self.timed(
                "channels",
                client.get::<Option<String>, _>(self.keys.node_channels(&n.uid)),
            )
        });
        let mut out: HashMap<String, u64> = HashMap::new();
        for read in join_all(reads).await {
            let Some(json) = read? else { continue };
            let map: HashMap<String, u64> = serde_json::from_str(&json)
                .map_err(|e| EngineError::Internal(format!("malformed channel map: {e}")))?;
            for (channel, n) in map {
                *out.entry(channel).or_default() += n;
            }
        }
        Ok(out)
    }
}

/// Writes heartbeats until cancelled, and counts the live nodes after each.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = shared.heartbeat().await {
                    debug!(error = %e, "heartbeat failed");
                }
                match shared.nodes().await {
                    Ok(nodes) => shared.metrics.nodes.set(nodes.len() as i64),
                    Err(e) => debug!(error = %e, "node count not read"),
                }
            }
        }
    }
}
