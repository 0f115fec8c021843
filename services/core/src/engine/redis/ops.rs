//! Single Redis operations on one channel (history reads, presence, raw pub/sub
//! sends), shared by the engine's API and its delivery workers. Publications
//! with history are batched (`batch`).

use std::time::Duration;

use fred::interfaces::{KeysInterface, PubsubInterface};
use fred::types::Value;

use super::conn::Shared;
use super::scripts::{self, Read};
use crate::engine::memory::new_epoch;
use crate::engine::{EngineError, IDEMPOTENCY_TTL};
use crate::publication::{ClientInfo, StreamPosition};

/// A channel's offset and epoch outlive its history by this much, so positions
/// stay comparable after the publications themselves expired.
const META_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Presence entries not refreshed within this time are dropped.
pub(super) const PRESENCE_TTL: Duration = Duration::from_secs(60);

impl Shared {
    /// The meta hash's TTL (s) for a channel keeping history for `history_ttl`.
    pub(super) fn meta_ttl(history_ttl: Duration) -> u64 {
        META_TTL.max(history_ttl * 2).as_secs()
    }

    /// Publishes a message without history, unless `idempotency_key` was used
    /// in this channel within [`IDEMPOTENCY_TTL`].
    pub(super) async fn publish_raw_once(
        &self,
        channel: &str,
        message: String,
        idempotency_key: &str,
    ) -> Result<(), EngineError> {
        let client = self.client()?;
        let keys = vec![self.keys.result(channel, idempotency_key)];
        let command = if self.cluster { "spublish" } else { "publish" };
        let args: Vec<Value> = vec![
            self.keys.pubsub(channel).into(),
            message.into(),
            command.into(),
            (IDEMPOTENCY_TTL.as_secs() as i64).into(),
        ];
        self.timed(
            "publish",
            scripts::run(&self.scripts.publish_once, client, keys, args),
        )
        .await?;
        Ok(())
    }

    /// Publishes a message on a channel's pub/sub channel (`SPUBLISH` in Cluster).
    pub(super) async fn publish_raw(
        &self,
        channel: &str,
        message: String,
    ) -> Result<(), EngineError> {
        self.send_pubsub(self.keys.pubsub(channel), message, self.cluster)
            .await
    }

    /// `PUBLISH` (or `SPUBLISH`, routed to the channel's slot) of one message.
    pub(super) async fn send_pubsub(
        &self,
        name: String,
        message: String,
        sharded: bool,
    ) -> Result<(), EngineError> {
        let client = self.client()?;
        if sharded {
            self.timed("spublish", client.spublish::<Value, _, _>(name, message))
                .await?;
        } else {
            self.timed("publish", client.publish::<Value, _, _>(name, message))
                .await?;
        }
        Ok(())
    }

    /// Runs the history script: the top position (creating the epoch if needed)
    /// and up to `count` entries from `start` (`count` -1: all, 0: none).
    pub(super) async fn read(
        &self,
        channel: &str,
        start: String,
        count: i64,
        reverse: bool,
    ) -> Result<Read, EngineError> {
        let client = self.client()?;
        let keys = vec![self.keys.stream(channel), self.keys.meta(channel)];
        let args: Vec<Value> = vec![
            new_epoch().into(),
            (Self::meta_ttl(Duration::ZERO) as i64).into(),
            start.into(),
            count.into(),
            if reverse { "1" } else { "0" }.into(),
        ];
        let reply = self
            .timed(
                "history",
                scripts::run(&self.scripts.history, client, keys, args),
            )
            .await?;
        scripts::read(reply)
    }

    /// Up to `count` publications after offset `last`, with the top position.
    pub(super) async fn read_after(
        &self,
        channel: &str,
        last: u64,
        count: usize,
    ) -> Result<Read, EngineError> {
        self.read(channel, format!("{}-0", last + 1), count as i64, false)
            .await
    }

    /// The top position alone.
    pub(super) async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
        Ok(self.read(channel, "-".into(), 0, false).await?.position)
    }

    /// Deletes a channel's stream, keeping its meta.
    pub(super) async fn remove_stream(&self, channel: &str) -> Result<(), EngineError> {
        let client = self.client()?;
        self.timed(
            "remove_history",
            client.del::<Value, _>(self.keys.stream(channel)),
        )
        .await?;
        Ok(())
    }

    /// Adds or refreshes one connection's presence.
    pub(super) async fn presence_add(
        &self,
        channel: &str,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        let client = self.client()?;
        let json = serde_json::to_string(info).expect("client info always serializes");
        let expires = crate::now_ms() + PRESENCE_TTL.as_millis() as i64;
        let keys = vec![
            self.keys.presence(channel),
            self.keys.presence_expiry(channel),
        ];
        let args: Vec<Value> = vec![
            info.client.clone().into(),
            json.into(),
            expires.into(),
            (PRESENCE_TTL.as_secs() as i64).into(),
        ];
        self.timed(
            "presence",
            scripts::run(&self.scripts.presence_add, client, keys, args),
        )
        .await?;
        Ok(())
    }

    /// Removes one connection's presence.
    pub(super) async fn presence_remove(
        &self,
        channel: &str,
        client_id: &str,
    ) -> Result<(), EngineError> {
        let client = self.client()?;
        let keys = vec![
            self.keys.presence(channel),
            self.keys.presence_expiry(channel),
        ];
        let args: Vec<Value> = vec![client_id.into()];
        self.timed(
            "presence",
            scripts::run(&self.scripts.presence_remove, client, keys, args),
        )
        .await?;
        Ok(())
    }

    /// Live presence entries (expired ones are removed on the way).
    pub(super) async fn presence_entries(
        &self,
        channel: &str,
    ) -> Result<Vec<ClientInfo>, EngineError> {
        let client = self.client()?;
        let keys = vec![
            self.keys.presence(channel),
            self.keys.presence_expiry(channel),
        ];
        let args: Vec<Value> = vec![crate::now_ms().into()];
        let reply = self
            .timed(
                "presence",
                scripts::run(&self.scripts.presence_get, client, keys, args),
            )
            .await?;
        reply
            .into_array()
            .into_iter()
            .filter_map(|v| v.as_bytes().map(|b| b.to_vec()))
            .map(|b| {
                serde_json::from_slice::<ClientInfo>(&b)
                    .map_err(|e| EngineError::Internal(format!("malformed presence entry: {e}")))
            })
            .collect()
    }
}
