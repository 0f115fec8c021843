//! Subscribing and leaving: permission checks, the node-level engine
//! subscription, recovery of missed publications, presence and join/leave.

use std::sync::Arc;

use herald_core::auth::now_secs;
use herald_core::channel::Channel;
use herald_core::channel_ops;
use herald_core::engine::{Engine, EngineError, HistoryQuery};
use herald_core::metrics::labels::RecoveryFrom;
use herald_core::namespace::SubscribePolicy;
use herald_core::protocol::command::SubscribeRequest;
use herald_core::protocol::reply::{self, Body, Push, Reply, SubscribeResult};
use herald_core::protocol::{Disconnect, Error};
use herald_core::publication::{RawJson, StreamPosition};
use tracing::warn;

use super::{Session, Subscription};
use crate::frame::Frame;

impl Session {
    pub(super) fn parse_channel(&self, name: &str) -> Result<Channel, Error> {
        channel_ops::parse(name, &self.gw.namespaces)
    }

    pub(super) async fn subscribe(
        &mut self,
        id: u32,
        request: SubscribeRequest,
    ) -> Result<Result<(), Error>, Disconnect> {
        let (channel, expires_at, chan_info) = match self.authorize(&request).await? {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        match self.join(&channel, Some(&request), chan_info).await {
            Ok((mut result, delivered)) => {
                if let Some(exp) = expires_at {
                    result.expires = true;
                    result.ttl = (exp - now_secs()).max(1) as u64;
                    if let Some(sub) = self.subs.get_mut(channel.name()) {
                        sub.expires_at = Some(exp);
                    }
                }
                let reply = Frame::from(Reply {
                    id,
                    body: Body::Subscribe(result),
                });
                self.outbox
                    .release(Some(reply), &[(channel.name_arc().clone(), delivered)]);
                self.announce_join(channel.name_arc()).await;
            }
            Err(e) => {
                warn!(client = %self.client, channel = %channel.name(), error = %e, "subscribe failed");
                return Ok(Err(Error::Internal));
            }
        }
        Ok(Ok(()))
    }

    /// Checks a client subscribe request. The outer error ends the connection.
    #[allow(clippy::type_complexity)]
    async fn authorize(
        &self,
        request: &SubscribeRequest,
    ) -> Result<Result<(Channel, Option<i64>, Option<RawJson>), Error>, Disconnect> {
        let channel = match self.parse_channel(&request.channel) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if self.subs.contains_key(channel.name()) {
            return Ok(Err(Error::AlreadySubscribed));
        }
        if self.subs.len() >= self.gw.config.max_subscriptions {
            return Ok(Err(Error::LimitExceeded));
        }
        let user = self.user.as_deref().unwrap_or_default();
        if !request.token.is_empty() {
            let claims = match self.gw.verifier.verify_subscribe(&request.token).await {
                Ok(c) => c,
                Err(e) => return self.token_refused("subscription token", &e),
            };
            if claims.channel != channel.name()
                || claims.sub != user
                || claims.client.as_deref().is_some_and(|c| c != &*self.client)
            {
                return Ok(Err(Error::PermissionDenied));
            }
            let info = claims
                .info
                .and_then(|v| serde_json::value::to_raw_value(&v).ok());
            return Ok(Ok((channel, claims.exp, info)));
        }
        let allowed = match channel.options().subscribe {
            SubscribePolicy::Anonymous => true,
            SubscribePolicy::Any => !user.is_empty(),
            SubscribePolicy::Token => false,
            SubscribePolicy::Owner => !user.is_empty() && channel.rest() == user,
        };
        if !allowed {
            return Ok(Err(Error::PermissionDenied));
        }
        Ok(Ok((channel, None, None)))
    }

    /// Subscribes the connection and prepares the subscribe result, holding the
    /// channel's live frames back; the caller releases them after its reply.
    /// Returns the result and the offset it delivers up to.
    pub(super) async fn join(
        &mut self,
        channel: &Channel,
        request: Option<&SubscribeRequest>,
        chan_info: Option<RawJson>,
    ) -> Result<(SubscribeResult, u64), EngineError> {
        let name = channel.name_arc().clone();
        self.outbox.hold(&name);
        self.gw.hub.subscribe(&name, self.conn, self.outbox.clone());
        self.subs.insert(
            name.clone(),
            Subscription {
                channel: channel.clone(),
                expires_at: None,
                chan_info: chan_info.clone(),
            },
        );
        let prepared = self.prepare(channel, request, chan_info).await;
        if prepared.is_err() {
            self.outbox.release(None, &[(name.clone(), u64::MAX)]);
            self.leave(&name).await;
        }
        prepared
    }

    async fn prepare(
        &self,
        channel: &Channel,
        request: Option<&SubscribeRequest>,
        chan_info: Option<RawJson>,
    ) -> Result<(SubscribeResult, u64), EngineError> {
        let engine = &self.gw.engine;
        engine.subscribe(channel).await?;
        let options = channel.options();
        if options.presence {
            engine
                .add_presence(channel, &self.client_info(chan_info))
                .await?;
        }
        if !options.has_history() {
            return Ok((SubscribeResult::default(), 0));
        }
        let recover = request.filter(|r| r.recover);
        let mut result = SubscribeResult {
            recoverable: true,
            positioned: true,
            was_recovering: recover.is_some(),
            ..SubscribeResult::default()
        };
        let live = engine.live_position(channel);
        if let Some(r) = recover {
            if let Some(live) = live.filter(|p| p.offset == r.offset && p.epoch == r.epoch) {
                // Nothing was missed: the client is where this node's delivery is.
                self.gw.metrics.recovery(true, RecoveryFrom::Memory);
                result.recovered = true;
                result.epoch = live.epoch;
                result.offset = live.offset;
                return Ok((result, live.offset));
            }
            let since = StreamPosition {
                offset: r.offset,
                epoch: r.epoch.clone(),
            };
            let history = engine
                .history(
                    channel,
                    HistoryQuery {
                        since: Some(since),
                        limit: Some(self.gw.config.history_limit),
                        reverse: false,
                    },
                )
                .await?;
            let top = history.position.offset;
            let reaches_back = history
                .publications
                .first()
                .map_or(top == r.offset, |p| p.offset == r.offset + 1);
            let reaches_top = history.publications.last().is_none_or(|p| p.offset == top);
            result.recovered = history.position.epoch == r.epoch && reaches_back && reaches_top;
            let from = if matches!(**engine, Engine::Redis(_)) {
                RecoveryFrom::Redis
            } else {
                RecoveryFrom::Memory
            };
            self.gw.metrics.recovery(result.recovered, from);
            if result.recovered {
                result.publications = history.publications;
            }
            result.epoch = history.position.epoch;
            result.offset = top;
        } else if let Some(live) = live.filter(|_| !options.replay_latest) {
            result.epoch = live.epoch;
            result.offset = live.offset;
        } else {
            let latest = usize::from(options.replay_latest);
            let history = engine
                .history(
                    channel,
                    HistoryQuery {
                        since: None,
                        limit: Some(latest),
                        reverse: true,
                    },
                )
                .await?;
            result.publications = history.publications;
            result.epoch = history.position.epoch;
            result.offset = history.position.offset;
        }
        let delivered = result.offset;
        Ok((result, delivered))
    }

    /// A server-side subscription made after connect (server API or control).
    pub(super) async fn server_subscribe(&mut self, name: &str) {
        let Ok(channel) = self.parse_channel(name) else {
            warn!(client = %self.client, channel = %name, "server-side subscribe to invalid channel");
            return;
        };
        if self.subs.contains_key(channel.name()) {
            return;
        }
        match self.join(&channel, None, None).await {
            Ok((result, delivered)) => {
                let push = Frame::from(Push::Subscribe {
                    channel: channel.name().to_owned(),
                    result,
                });
                self.outbox
                    .release(Some(push), &[(channel.name_arc().clone(), delivered)]);
                self.announce_join(channel.name_arc()).await;
            }
            Err(e) => {
                warn!(client = %self.client, channel = %name, error = %e, "server-side subscribe failed")
            }
        }
    }

    pub(super) async fn announce_join(&self, name: &Arc<str>) {
        let Some(sub) = self.subs.get(name) else {
            return;
        };
        if sub.channel.options().join_leave {
            let info = self.client_info(sub.chan_info.clone());
            if let Err(e) = self.gw.engine.publish_join(&sub.channel, &info).await {
                warn!(client = %self.client, channel = %name, error = %e, "join not announced");
            }
        }
    }

    /// Leaves a channel: hub, engine, presence, leave event.
    pub(super) async fn leave(&mut self, name: &str) {
        let Some(sub) = self.subs.remove(name) else {
            return;
        };
        self.outbox.forget(name);
        let engine = &self.gw.engine;
        if self.gw.hub.unsubscribe(name, self.conn) {
            if let Err(e) = engine.unsubscribe(name).await {
                warn!(channel = %name, error = %e, "engine unsubscribe failed");
            }
        }
        let options = sub.channel.options();
        if options.presence {
            if let Err(e) = engine.remove_presence(&sub.channel, &self.client).await {
                warn!(channel = %name, error = %e, "presence not removed");
            }
        }
        if options.join_leave {
            let info = self.client_info(sub.chan_info);
            if let Err(e) = engine.publish_leave(&sub.channel, &info).await {
                warn!(channel = %name, error = %e, "leave not announced");
            }
        }
    }

    pub(super) async fn unsubscribe(&mut self, name: &str) -> Result<reply::Empty, Error> {
        self.leave(name).await;
        Ok(reply::Empty {})
    }

    pub(super) async fn refresh_presence(&self) {
        for sub in self.subs.values().filter(|s| s.channel.options().presence) {
            let info = self.client_info(sub.chan_info.clone());
            if let Err(e) = self.gw.engine.add_presence(&sub.channel, &info).await {
                warn!(channel = %sub.channel.name(), error = %e, "presence refresh failed");
            }
        }
    }
}
