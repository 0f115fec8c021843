//! The server API methods, each parsing its Centrifugo-shaped request and
//! answering its result; `batch` runs several of them in one call.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use herald_core::channel::Channel;
use herald_core::channel_ops::{self, Failure, API_HISTORY_CAP};
use herald_core::control;
use herald_core::engine::{EngineError, PublishOptions};
use herald_core::protocol::{Disconnect, Error};
use herald_core::publication::{RawJson, StreamPosition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};
use tracing::warn;

use crate::{ApiError, Publisher, Replies};

/// Methods this API answers.
pub(crate) const KNOWN: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
    "rpc",
];

#[derive(Deserialize)]
struct PublishRequest {
    #[serde(default)]
    channel: String,
    data: Option<RawJson>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct BroadcastRequest {
    #[serde(default)]
    channels: Vec<String>,
    data: Option<RawJson>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Default)]
struct PublishResult {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Deserialize)]
struct UserChannelRequest {
    #[serde(default)]
    user: String,
    #[serde(default)]
    channel: String,
    client: Option<String>,
}

#[derive(Deserialize, Default)]
struct DisconnectCode {
    code: u16,
}

#[derive(Deserialize)]
struct DisconnectRequest {
    #[serde(default)]
    user: String,
    client: Option<String>,
    disconnect: Option<DisconnectCode>,
}

#[derive(Deserialize)]
struct RefreshRequest {
    #[serde(default)]
    user: String,
    client: Option<String>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: i64,
}

#[derive(Deserialize)]
struct ChannelRequest {
    #[serde(default)]
    channel: String,
}

#[derive(Deserialize)]
struct HistoryRequest {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    limit: i64,
    since: Option<StreamPosition>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize, Default)]
struct ChannelsRequest {
    #[serde(default)]
    pattern: String,
}

#[derive(Deserialize)]
struct BatchRequest {
    #[serde(default)]
    commands: Vec<HashMap<String, Box<RawValue>>>,
}

#[derive(Serialize)]
struct Empty {}

fn parse<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|_| ApiError::bad_request())
}

fn raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, ApiError> {
    to_raw_value(value).map_err(|_| ApiError::from(Error::Internal))
}

fn unavailable(e: EngineError) -> ApiError {
    warn!(error = %e, "engine call failed");
    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, Error::Internal)
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> ApiError {
        match failure {
            Failure::Refused(e) => e.into(),
            Failure::Engine(e) => unavailable(e),
        }
    }
}

impl Publisher {
    fn channel(&self, name: &str) -> Result<Channel, ApiError> {
        Ok(channel_ops::parse(name, &self.namespaces)?)
    }

    pub(crate) async fn dispatch(
        &self,
        method: &str,
        body: &str,
    ) -> Result<Box<RawValue>, ApiError> {
        match method {
            "publish" => {
                let r: PublishRequest = parse(body)?;
                let data = r.data.ok_or(Error::BadRequest)?;
                raw(&self
                    .publish(&r.channel, data, r.skip_history, r.tags)
                    .await?)
            }
            "broadcast" => self.broadcast(parse(body)?).await,
            "subscribe" | "unsubscribe" => {
                let r: UserChannelRequest = parse(body)?;
                self.channel(&r.channel)?;
                if r.user.is_empty() {
                    return Err(Error::BadRequest.into());
                }
                let command = if method == "subscribe" {
                    control::Command::Subscribe {
                        user: r.user,
                        channel: r.channel,
                        client: r.client,
                    }
                } else {
                    control::Command::Unsubscribe {
                        user: r.user,
                        channel: r.channel,
                        client: r.client,
                    }
                };
                self.control(command).await
            }
            "disconnect" => {
                let r: DisconnectRequest = parse(body)?;
                if r.user.is_empty() {
                    return Err(Error::BadRequest.into());
                }
                let code = r
                    .disconnect
                    .map_or(Disconnect::FORCE_DISCONNECT.code, |d| d.code);
                self.control(control::Command::Disconnect {
                    user: r.user,
                    client: r.client,
                    code,
                    reason: String::new(),
                })
                .await
            }
            "refresh" => {
                let r: RefreshRequest = parse(body)?;
                if r.user.is_empty() {
                    return Err(Error::BadRequest.into());
                }
                self.control(control::Command::Refresh {
                    user: r.user,
                    client: r.client,
                    expired: r.expired,
                    expire_at: r.expire_at,
                })
                .await
            }
            "presence" => {
                let r: ChannelRequest = parse(body)?;
                let channel = self.channel(&r.channel)?;
                let result = channel_ops::presence(&self.engine, &channel).await?;
                raw(&serde_json::json!({ "presence": result.presence }))
            }
            "presence_stats" => {
                let r: ChannelRequest = parse(body)?;
                let channel = self.channel(&r.channel)?;
                let s = channel_ops::presence_stats(&self.engine, &channel).await?;
                raw(&serde_json::json!({ "num_clients": s.num_clients, "num_users": s.num_users }))
            }
            "history" => self.history(parse(body)?).await,
            "history_remove" => {
                let r: ChannelRequest = parse(body)?;
                let channel = self.channel(&r.channel)?;
                self.engine
                    .remove_history(&channel)
                    .await
                    .map_err(unavailable)?;
                raw(&Empty {})
            }
            "channels" => {
                let r: ChannelsRequest = parse(body)?;
                let channels = self.engine.channels().await.map_err(unavailable)?;
                let matching: BTreeMap<String, serde_json::Value> = channels
                    .into_iter()
                    .filter(|(name, _)| r.pattern.is_empty() || glob_match(&r.pattern, name))
                    .map(|(name, n)| (name, serde_json::json!({ "num_clients": n })))
                    .collect();
                raw(&serde_json::json!({ "channels": matching }))
            }
            "info" => {
                let nodes = self.engine.nodes().await.map_err(unavailable)?;
                raw(&serde_json::json!({ "nodes": nodes }))
            }
            "batch" => self.batch(parse(body)?).await,
            "rpc" => Err(Error::MethodNotFound.into()),
            _ => Err(ApiError::status(
                StatusCode::NOT_FOUND,
                Error::MethodNotFound,
            )),
        }
    }

    async fn publish(
        &self,
        name: &str,
        data: RawJson,
        skip_history: bool,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<PublishResult, ApiError> {
        let channel = self.channel(name)?;
        let options = PublishOptions {
            info: None,
            tags,
            skip_history,
        };
        let timer = self.metrics.publish_seconds.start_timer();
        let position = self
            .engine
            .publish(&channel, data, options)
            .await
            .map_err(|e| {
                self.metrics.engine_errors.inc();
                unavailable(e)
            })?;
        timer.observe_duration();
        self.metrics.publications.with_label_values(&["api"]).inc();
        Ok(PublishResult {
            offset: position.offset,
            epoch: position.epoch,
        })
    }

    async fn broadcast(&self, r: BroadcastRequest) -> Result<Box<RawValue>, ApiError> {
        let data = r.data.ok_or(Error::BadRequest)?;
        if r.channels.is_empty() {
            return Err(Error::BadRequest.into());
        }
        let publishes = r.channels.iter().map(|name| {
            let tags = r.tags.clone();
            let data = data.clone();
            async move { self.publish(name, data, r.skip_history, tags).await }
        });
        let mut responses = Vec::with_capacity(r.channels.len());
        for outcome in futures_join(publishes).await {
            responses.push(match outcome {
                Ok(result) => serde_json::json!({ "result": result }),
                Err(e) => serde_json::json!({ "error": e.error }),
            });
        }
        raw(&serde_json::json!({ "responses": responses }))
    }

    async fn history(&self, r: HistoryRequest) -> Result<Box<RawValue>, ApiError> {
        let channel = self.channel(&r.channel)?;
        let engine = &self.engine;
        let result = channel_ops::history(
            engine,
            &channel,
            r.limit,
            r.since,
            r.reverse,
            API_HISTORY_CAP,
        )
        .await?;
        raw(&result)
    }

    async fn control(&self, command: control::Command) -> Result<Box<RawValue>, ApiError> {
        self.engine
            .publish_control(&command)
            .await
            .map_err(unavailable)?;
        raw(&Empty {})
    }

    async fn batch(&self, r: BatchRequest) -> Result<Box<RawValue>, ApiError> {
        let mut replies: Replies = Vec::with_capacity(r.commands.len());
        for command in r.commands {
            let Some((method, body)) = command.into_iter().next() else {
                return Err(ApiError::bad_request());
            };
            if method == "batch" {
                return Err(ApiError::bad_request());
            }
            let mut reply = HashMap::new();
            match Box::pin(self.dispatch(&method, body.get())).await {
                Ok(result) => reply.insert(method, result),
                Err(e) => reply.insert("error".to_owned(), raw(&e.error)?),
            };
            replies.push(reply);
        }
        raw(&serde_json::json!({ "replies": replies }))
    }
}

/// Runs futures concurrently on the current task, keeping their order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

/// Matches `*` (any run) and `?` (one character) wildcards.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob_match("user:*", "user:42"));
        assert!(glob_match("*:4?", "user:42"));
        assert!(!glob_match("stock:*", "user:42"));
        assert!(glob_match("*", ""));
    }
}
