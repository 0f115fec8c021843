//! The `connect` command: verifies the token, registers the session with
//! the hub (per-user limit, drain) and makes the token's server-side
//! subscriptions (personal channel, `channels` claim), recovering them as asked.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::auth::now_secs;
use herald_core::channel::Channel;
use herald_core::protocol::command::ConnectRequest;
use herald_core::protocol::reply::{Body, ConnectResult, Reply};
use herald_core::protocol::{Disconnect, Error};
use tracing::warn;

use super::Session;
use crate::frame::Frame;
use crate::hub::Registration;

impl Session {
    pub(super) async fn connect(
        &mut self,
        id: u32,
        request: ConnectRequest,
    ) -> Result<Result<(), Error>, Disconnect> {
        let claims = if request.token.is_empty() {
            if !self.gw.anonymous {
                return Err(Disconnect::BAD_REQUEST);
            }
            Default::default()
        } else {
            match self.gw.verifier.verify_connect(&request.token).await {
                Ok(claims) => claims,
                Err(e) => return self.token_refused("connect token", &e),
            }
        };
        let user: Arc<str> = Arc::from(claims.sub.as_str());
        let hub = &self.gw.hub;
        let max_per_user = self.gw.config.max_connections_per_user;
        let (client, outbox) = (self.client.clone(), self.outbox.clone());
        match hub.add_session(&user, self.conn, client, outbox, max_per_user) {
            Registration::Added => {}
            // The node began draining after this connection was accepted.
            Registration::Draining => return Err(Disconnect::SHUTDOWN),
            Registration::UserFull => return Ok(Err(Error::LimitExceeded)),
        }
        self.user = Some(user.clone());
        self.conn_info = claims
            .info
            .as_ref()
            .and_then(|v| serde_json::value::to_raw_value(v).ok());
        self.expires_at = claims.exp;

        let mut channels: Vec<String> = Vec::new();
        if !user.is_empty() {
            channels.extend(
                self.gw
                    .namespaces
                    .personal()
                    .map(|ns| format!("{ns}:{user}")),
            );
        }
        channels.extend(claims.channels);
        channels.extend(claims.subs.into_keys());
        let mut requests = request.subs;
        let mut subs = HashMap::new();
        let mut released = Vec::new();
        for name in channels {
            let channel = match Channel::parse(&name, &self.gw.namespaces) {
                Ok(c) => c,
                Err(e) => {
                    warn!(client = %self.client, channel = %name, error = %e, "token channel skipped");
                    continue;
                }
            };
            if self.subs.contains_key(channel.name()) {
                continue;
            }
            let recover = requests.remove(channel.name());
            match self.join(&channel, recover.as_ref(), None).await {
                Ok((result, delivered)) => {
                    released.push((channel.name_arc().clone(), delivered));
                    subs.insert(channel.name().to_owned(), result);
                }
                Err(e) => {
                    warn!(client = %self.client, channel = %name, error = %e, "server-side subscribe failed");
                    self.outbox.release(None, &released);
                    return Err(Disconnect::SERVER_ERROR);
                }
            }
        }
        let result = ConnectResult {
            client: self.client.to_string(),
            version: herald_core::VERSION,
            expires: self.expires_at.is_some(),
            ttl: self.ttl(),
            subs,
            ping: self.gw.config.ping_interval.as_secs().max(1),
            pong: true,
            session: self
                .emulation
                .as_deref()
                .map_or_else(String::new, |session| session.to_string()),
            node: self
                .emulation
                .as_ref()
                .map_or_else(String::new, |_| self.gw.hub.uid().to_owned()),
        };
        let reply = Frame::from(Reply {
            id,
            body: Body::Connect(result),
        });
        self.outbox.release(Some(reply), &released);
        self.transport_metrics().connects.inc();
        for (channel, _) in &released {
            self.announce_join(channel).await;
        }
        Ok(Ok(()))
    }

    pub(super) fn ttl(&self) -> u64 {
        self.expires_at
            .map_or(0, |exp| (exp - now_secs()).max(1) as u64)
    }
}
