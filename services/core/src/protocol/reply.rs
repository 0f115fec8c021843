//! Replies and session-level pushes a server sends. Result fields are omitted
//! when empty (false, 0, ""), as Centrifugo's encoder does; an empty result is `{}`.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;

use crate::protocol::codes::{Error, Unsubscribe};
use crate::publication::{ClientInfo, Publication, RawJson};

/// A reply to the command with `id`.
#[derive(Debug, Serialize)]
pub struct Reply {
    /// The command's id.
    pub id: u32,
    /// The result or error.
    #[serde(flatten)]
    pub body: Body,
}

/// What a reply carries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Body {
    Error(Error),
    Connect(ConnectResult),
    Subscribe(SubscribeResult),
    Unsubscribe(Empty),
    Publish(Empty),
    Presence(PresenceResult),
    PresenceStats(PresenceStatsResult),
    History(HistoryResult),
    Ping(Empty),
    Rpc(Empty),
    Refresh(RefreshResult),
    SubRefresh(SubRefreshResult),
}

impl Reply {
    /// Encodes the reply as one JSON line (no trailing newline).
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("replies always serialize"))
    }
}

/// `{}`.
#[derive(Debug, Default, Serialize)]
pub struct Empty {}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Result of `connect`.
#[derive(Debug, Default, Serialize)]
pub struct ConnectResult {
    /// Connection id.
    pub client: String,
    /// Server version.
    pub version: &'static str,
    /// The connection expires and must be refreshed.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
    /// Server-side subscriptions.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub subs: HashMap<String, SubscribeResult>,
    /// Server ping interval, seconds.
    pub ping: u64,
    /// The client must answer pings.
    pub pong: bool,
    /// Emulation transports: the session id the client names in `/emulation` requests.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Emulation transports: the node holding the session.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// Result of `subscribe`, also the body of a subscribe push and of `connect.subs` entries.
#[derive(Debug, Default, Serialize)]
pub struct SubscribeResult {
    /// The subscription expires and must be refreshed.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
    /// Publications carry offsets; the client may recover.
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    /// Stream epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Recovered (or replayed) publications, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Everything missed was delivered.
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    /// Latest offset.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The stream position is tracked.
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    /// The client asked to recover.
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
}

/// Result of `presence`.
#[derive(Debug, Default, Serialize)]
pub struct PresenceResult {
    /// Client id to info.
    pub presence: HashMap<String, ClientInfo>,
}

/// Result of `presence_stats`.
#[derive(Debug, Default, Serialize)]
pub struct PresenceStatsResult {
    /// Connections in the channel.
    pub num_clients: u64,
    /// Distinct users in the channel.
    pub num_users: u64,
}

/// Result of `history`.
#[derive(Debug, Default, Serialize)]
pub struct HistoryResult {
    /// Publications.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Stream epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Latest offset.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
}

/// Result of `refresh`.
#[derive(Debug, Default, Serialize)]
pub struct RefreshResult {
    /// Connection id.
    pub client: String,
    /// Server version.
    pub version: &'static str,
    /// Still expires.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
}

/// Result of `sub_refresh`.
#[derive(Debug, Default, Serialize)]
pub struct SubRefreshResult {
    /// Still expires.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
}

#[derive(Serialize)]
struct PushFrame<'a> {
    push: PushBody<'a>,
}

#[derive(Serialize)]
struct PushBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    channel: &'a str,
    #[serde(flatten)]
    kind: PushKind<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PushKind<'a> {
    Subscribe(&'a SubscribeResult),
    Unsubscribe { code: u32, reason: &'a str },
    Disconnect { code: u16, reason: &'a str },
    Message { data: &'a RawJson },
}

fn encode_push(channel: &str, kind: PushKind<'_>) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&PushFrame {
            push: PushBody { channel, kind },
        })
        .expect("pushes always serialize"),
    )
}

/// A server-side subscription made after connect.
pub fn subscribe_push(channel: &str, result: &SubscribeResult) -> Bytes {
    encode_push(channel, PushKind::Subscribe(result))
}

/// The server ended a subscription; codes >= 2500 make SDKs resubscribe.
pub fn unsubscribe_push(channel: &str, why: Unsubscribe) -> Bytes {
    let (code, reason) = (why.code(), why.reason());
    encode_push(channel, PushKind::Unsubscribe { code, reason })
}

/// A disconnect notice, for transports without close frames (SSE).
pub fn disconnect_push(code: u16, reason: &str) -> Bytes {
    encode_push("", PushKind::Disconnect { code, reason })
}

/// An asynchronous message to one connection.
pub fn message_push(data: &RawJson) -> Bytes {
    encode_push("", PushKind::Message { data })
}

/// The server's ping frame.
pub const PING: &[u8] = b"{}";

/// A push to one connection of the session's own making (channel pushes
/// shared by every subscriber are encoded once, see [`crate::publication`]).
#[derive(Debug)]
pub enum Push {
    /// A server-side subscription made after connect.
    Subscribe {
        /// The channel.
        channel: String,
        /// Its subscribe result (with recovered publications, if any).
        result: SubscribeResult,
    },
    /// The server ended a subscription.
    Unsubscribe {
        /// The channel.
        channel: String,
        /// Why.
        why: Unsubscribe,
    },
}

impl Push {
    /// `{"push":{..}}`, as bidirectional transports send it.
    pub fn encode(&self) -> Bytes {
        match self {
            Push::Subscribe { channel, result } => subscribe_push(channel, result),
            Push::Unsubscribe { channel, why } => unsubscribe_push(channel, *why),
        }
    }

    /// The push without its `{"push":..}` wrapper, as unidirectional transports send it.
    pub fn encode_body(&self) -> Bytes {
        let body = match self {
            Push::Subscribe { channel, result } => PushBody {
                channel,
                kind: PushKind::Subscribe(result),
            },
            Push::Unsubscribe { channel, why } => PushBody {
                channel,
                kind: PushKind::Unsubscribe {
                    code: why.code(),
                    reason: why.reason(),
                },
            },
        };
        Bytes::from(serde_json::to_vec(&body).expect("pushes always serialize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Disconnect;

    #[test]
    fn replies_omit_empty_fields() {
        let r = Reply {
            id: 3,
            body: Body::Publish(Empty {}),
        };
        assert_eq!(&r.encode()[..], br#"{"id":3,"publish":{}}"#);
        let r = Reply {
            id: 2,
            body: Body::Error(Error::Internal),
        };
        assert_eq!(
            &r.encode()[..],
            br#"{"id":2,"error":{"code":100,"message":"internal server error","temporary":true}}"#
        );
        let r = Reply {
            id: 1,
            body: Body::Subscribe(SubscribeResult {
                recoverable: true,
                epoch: "e".into(),
                offset: 4,
                ..Default::default()
            }),
        };
        assert_eq!(
            &r.encode()[..],
            br#"{"id":1,"subscribe":{"recoverable":true,"epoch":"e","offset":4}}"#
        );
    }

    #[test]
    fn pushes_match_the_protocol() {
        assert_eq!(
            &unsubscribe_push("c", Unsubscribe::Server)[..],
            br#"{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
        );
        assert_eq!(
            &disconnect_push(Disconnect::SHUTDOWN.code, Disconnect::SHUTDOWN.reason)[..],
            br#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#
        );
        let push = Push::Unsubscribe {
            channel: "c".into(),
            why: Unsubscribe::Server,
        };
        assert_eq!(push.encode(), unsubscribe_push("c", Unsubscribe::Server));
        assert_eq!(
            &push.encode_body()[..],
            br#"{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}"#
        );
    }
}
