//! Commands a client sends. A frame holds one or more JSON commands separated
//! by `\n`; the first non-null request field decides the command.

use std::collections::HashMap;

use serde::Deserialize;

use crate::publication::RawJson;

/// One command as received. Request bodies are boxed: a frame of `{}` lines
/// holds one `Command` per 3 bytes, and unboxed they would make it take 190
/// times its size in memory before the caller can count them.
#[derive(Debug, Default, Deserialize)]
pub struct Command {
    /// Client-chosen id echoed in the reply; 0 only for `send` and pong.
    #[serde(default)]
    pub id: u32,
    connect: Option<Box<ConnectRequest>>,
    subscribe: Option<Box<SubscribeRequest>>,
    unsubscribe: Option<Box<ChannelRequest>>,
    publish: Option<Box<PublishRequest>>,
    presence: Option<Box<ChannelRequest>>,
    presence_stats: Option<Box<ChannelRequest>>,
    history: Option<Box<HistoryRequest>>,
    ping: Option<Empty>,
    send: Option<Box<SendRequest>>,
    rpc: Option<Box<RpcRequest>>,
    refresh: Option<Box<RefreshRequest>>,
    sub_refresh: Option<Box<SubRefreshRequest>>,
}

/// The request carried by a command.
#[derive(Debug)]
pub enum Request {
    /// `{}`: the answer to a server ping.
    Pong,
    /// Authenticate the connection.
    Connect(ConnectRequest),
    /// Subscribe to a channel.
    Subscribe(SubscribeRequest),
    /// Leave a channel.
    Unsubscribe(ChannelRequest),
    /// Publish into a channel.
    Publish(PublishRequest),
    /// Who is in a channel.
    Presence(ChannelRequest),
    /// How many are in a channel.
    PresenceStats(ChannelRequest),
    /// Read a channel's history.
    History(HistoryRequest),
    /// Explicit ping command.
    Ping,
    /// Asynchronous message to the server (no reply).
    Send(SendRequest),
    /// Remote procedure call.
    Rpc(RpcRequest),
    /// New connection token.
    Refresh(RefreshRequest),
    /// New subscription token.
    SubRefresh(SubRefreshRequest),
}

impl Command {
    /// Splits the command into its id and request, taking the first request field set.
    pub fn into_request(self) -> (u32, Request) {
        let request = if let Some(r) = self.connect {
            Request::Connect(*r)
        } else if let Some(r) = self.subscribe {
            Request::Subscribe(*r)
        } else if let Some(r) = self.unsubscribe {
            Request::Unsubscribe(*r)
        } else if let Some(r) = self.publish {
            Request::Publish(*r)
        } else if let Some(r) = self.presence {
            Request::Presence(*r)
        } else if let Some(r) = self.presence_stats {
            Request::PresenceStats(*r)
        } else if let Some(r) = self.history {
            Request::History(*r)
        } else if self.ping.is_some() {
            Request::Ping
        } else if let Some(r) = self.send {
            Request::Send(*r)
        } else if let Some(r) = self.rpc {
            Request::Rpc(*r)
        } else if let Some(r) = self.refresh {
            Request::Refresh(*r)
        } else if let Some(r) = self.sub_refresh {
            Request::SubRefresh(*r)
        } else {
            Request::Pong
        };
        (self.id, request)
    }
}

/// Parses every command of one text frame.
pub fn parse_frame(frame: &str) -> Result<Vec<Command>, serde_json::Error> {
    frame
        .split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// An empty object.
#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

/// `connect`.
#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    /// Connection JWT.
    #[serde(default)]
    pub token: String,
    /// Custom data (unused without a connect proxy).
    pub data: Option<RawJson>,
    /// Recovery requests for server-side subscriptions.
    #[serde(default)]
    pub subs: HashMap<String, SubscribeRequest>,
    /// SDK name.
    #[serde(default)]
    pub name: String,
    /// SDK version.
    #[serde(default)]
    pub version: String,
}

/// `subscribe`, and the per-channel entries of `connect.subs`.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    /// Channel name.
    #[serde(default)]
    pub channel: String,
    /// Subscription JWT.
    #[serde(default)]
    pub token: String,
    /// Ask for missed publications since `offset`/`epoch`.
    #[serde(default)]
    pub recover: bool,
    /// Stream epoch the client last saw.
    #[serde(default)]
    pub epoch: String,
    /// Offset the client last saw.
    #[serde(default)]
    pub offset: u64,
    /// Custom data.
    pub data: Option<RawJson>,
    /// Positioning request (implied by history here).
    #[serde(default)]
    pub positioned: bool,
    /// Recoverability request (implied by history here).
    #[serde(default)]
    pub recoverable: bool,
    /// Join/leave request.
    #[serde(default)]
    pub join_leave: bool,
    /// Feature flags (channel compaction); ignored, which SDKs accept.
    #[serde(default)]
    pub flag: i64,
}

/// Commands that only name a channel.
#[derive(Debug, Default, Deserialize)]
pub struct ChannelRequest {
    /// Channel name.
    #[serde(default)]
    pub channel: String,
}

/// `publish`.
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    /// Channel name.
    #[serde(default)]
    pub channel: String,
    /// Payload.
    pub data: RawJson,
}

/// `history`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryRequest {
    /// Channel name.
    #[serde(default)]
    pub channel: String,
    /// 0: position only; -1: all (capped); N: at most N.
    #[serde(default)]
    pub limit: i32,
    /// Start after this position.
    pub since: Option<crate::publication::StreamPosition>,
    /// Newest first.
    #[serde(default)]
    pub reverse: bool,
}

/// `send`.
#[derive(Debug, Deserialize)]
pub struct SendRequest {
    /// Payload.
    pub data: Option<RawJson>,
}

/// `rpc`.
#[derive(Debug, Default, Deserialize)]
pub struct RpcRequest {
    /// Method name.
    #[serde(default)]
    pub method: String,
    /// Payload.
    pub data: Option<RawJson>,
}

/// `refresh`.
#[derive(Debug, Default, Deserialize)]
pub struct RefreshRequest {
    /// New connection JWT.
    #[serde(default)]
    pub token: String,
}

/// `sub_refresh`.
#[derive(Debug, Default, Deserialize)]
pub struct SubRefreshRequest {
    /// Channel name.
    #[serde(default)]
    pub channel: String,
    /// New subscription JWT.
    #[serde(default)]
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batched_frames_and_picks_the_request() {
        let cmds = parse_frame(
            "{\"id\":1,\"connect\":{\"token\":\"t\",\"name\":\"js\",\"extra\":1}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\",\"flag\":1}}\n",
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        let mut it = cmds.into_iter().map(Command::into_request);
        assert!(matches!(it.next(), Some((1, Request::Connect(c))) if c.token == "t"));
        assert!(matches!(it.next(), Some((2, Request::Subscribe(s))) if s.channel == "a"));
    }

    #[test]
    fn empty_object_is_pong_and_wrong_types_fail() {
        let (id, r) = parse_frame("{}").unwrap().pop().unwrap().into_request();
        assert_eq!(id, 0);
        assert!(matches!(r, Request::Pong));
        assert!(parse_frame(r#"{"id":"x"}"#).is_err());
        assert!(parse_frame(r#"{"id":1,"subscribe":{"channel":5}}"#).is_err());
        assert!(parse_frame("not json").is_err());
    }
}
