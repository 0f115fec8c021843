//! Commands on channels and tokens after connect: publish, presence,
//! presence_stats, history, refresh and sub_refresh.

use herald_core::auth::now_secs;
use herald_core::channel_ops;
use herald_core::engine::{EngineError, PublishOptions};
use herald_core::metrics::labels::Source;
use herald_core::protocol::command::{HistoryRequest, PublishRequest};
use herald_core::protocol::reply::{
    self, HistoryResult, PresenceResult, PresenceStatsResult, RefreshResult, SubRefreshResult,
};
use herald_core::protocol::{Disconnect, Error};
use herald_core::publication::{is_deeper_than, MAX_DATA_DEPTH};
use tracing::warn;

use super::Session;

/// A command's answer; the outer error ends the connection.
type Answer<T> = Result<Result<T, Error>, Disconnect>;

impl Session {
    fn engine_error(&self, e: EngineError) -> Error {
        self.gw.metrics.engine_errors.inc();
        warn!(client = %self.client, error = %e, "engine call failed");
        Error::Internal
    }

    fn failed(&self, failure: channel_ops::Failure) -> Error {
        match failure {
            channel_ops::Failure::Refused(e) => e,
            channel_ops::Failure::Engine(e) => self.engine_error(e),
        }
    }

    pub(super) async fn publish(&mut self, request: PublishRequest) -> Result<reply::Empty, Error> {
        let channel = self.parse_channel(&request.channel)?;
        let user = self.user.as_deref().unwrap_or_default();
        if !channel.options().client_publish || user.is_empty() {
            return Err(Error::PermissionDenied);
        }
        if is_deeper_than(request.data.get(), MAX_DATA_DEPTH) {
            return Err(Error::BadRequest);
        }
        let chan_info = self
            .subs
            .get(channel.name())
            .and_then(|s| s.chan_info.clone());
        let options = PublishOptions {
            info: Some(self.client_info(chan_info)),
            ..PublishOptions::default()
        };
        self.gw
            .engine
            .publish(&channel, request.data, options)
            .await
            .map_err(|e| self.engine_error(e))?;
        self.gw.metrics.published(Source::Client, channel.name());
        Ok(reply::Empty {})
    }

    fn subscribed_channel(&self, name: &str) -> Result<herald_core::Channel, Error> {
        let channel = self.parse_channel(name)?;
        if !self.subs.contains_key(channel.name()) {
            return Err(Error::PermissionDenied);
        }
        Ok(channel)
    }

    pub(super) async fn presence(&self, name: &str) -> Result<PresenceResult, Error> {
        let channel = self.subscribed_channel(name)?;
        channel_ops::presence(&self.gw.engine, &channel)
            .await
            .map_err(|f| self.failed(f))
    }

    pub(super) async fn presence_stats(&self, name: &str) -> Result<PresenceStatsResult, Error> {
        let channel = self.subscribed_channel(name)?;
        channel_ops::presence_stats(&self.gw.engine, &channel)
            .await
            .map_err(|f| self.failed(f))
    }

    pub(super) async fn history(&self, request: HistoryRequest) -> Result<HistoryResult, Error> {
        let channel = self.subscribed_channel(&request.channel)?;
        let cap = self.gw.config.history_limit;
        let limit = i64::from(request.limit);
        channel_ops::history(
            &self.gw.engine,
            &channel,
            limit,
            request.since,
            request.reverse,
            cap,
        )
        .await
        .map_err(|f| self.failed(f))
    }

    pub(super) async fn refresh(&mut self, token: &str) -> Answer<RefreshResult> {
        let claims = match self.gw.verifier.verify_connect(token).await {
            Ok(c) => c,
            Err(e) => return self.token_refused("refresh token", &e),
        };
        if Some(claims.sub.as_str()) != self.user.as_deref() {
            return Err(Disconnect::INVALID_TOKEN);
        }
        self.expires_at = claims.exp;
        Ok(Ok(RefreshResult {
            client: self.client.to_string(),
            version: herald_core::VERSION,
            expires: self.expires_at.is_some(),
            ttl: self.ttl(),
        }))
    }

    pub(super) async fn sub_refresh(
        &mut self,
        channel: &str,
        token: &str,
    ) -> Answer<SubRefreshResult> {
        let claims = match self.gw.verifier.verify_subscribe(token).await {
            Ok(c) => c,
            Err(e) => return self.token_refused("subscription token", &e),
        };
        let user = self.user.as_deref().unwrap_or_default();
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(Err(Error::PermissionDenied));
        };
        if claims.channel != channel || claims.sub != user {
            return Ok(Err(Error::PermissionDenied));
        }
        sub.expires_at = claims.exp;
        Ok(Ok(SubRefreshResult {
            expires: claims.exp.is_some(),
            ttl: claims.exp.map_or(0, |e| (e - now_secs()).max(1) as u64),
        }))
    }
}
