//! A connection's frames as Centrifugo's unidirectional pushes: the push
//! object without the `{"push":..}` wrapper (`{"channel":"c","pub":{..}}`,
//! `{"connect":{..}}`, `{"disconnect":{..}}`, `{}` for a ping), as
//! `protocol.PushEncoder` writes them. Channel pushes stay the buffer the hub
//! encoded once (a slice of it). Framing for the wire is the transports' business.

use std::collections::HashMap;

use bytes::Bytes;
use herald_core::protocol::command::ConnectRequest;
use herald_core::protocol::reply::{disconnect_push, Body, ConnectResult, SubscribeResult};
use herald_core::protocol::{Disconnect, Error};
use herald_core::publication::push_body;
use serde::Serialize;

use crate::frame::Frame;

/// Centrifugo's close for a user over the per-user connection limit.
pub const CONNECTION_LIMIT: Disconnect = Disconnect {
    code: 3504,
    reason: "connection limit",
};

/// What one frame becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Encoded {
    /// A push to write.
    Push(Bytes),
    /// The connect was refused: the connection ends with this disconnect.
    Refused(Disconnect),
    /// Nothing for a unidirectional client (replies to commands it cannot send).
    Skip,
}

/// Encodes one frame.
pub fn encode(frame: Frame) -> Encoded {
    match frame {
        Frame::Channel(push) => Encoded::Push(push_body(&push.json)),
        Frame::Push(push) => Encoded::Push(push.encode_body()),
        Frame::Ping => Encoded::Push(Bytes::from_static(b"{}")),
        Frame::Json(json) if json.starts_with(b"{\"push\":") => Encoded::Push(push_body(&json)),
        Frame::Json(_) | Frame::Protobuf(_) => Encoded::Skip,
        Frame::Reply(reply) => match reply.body {
            Body::Connect(result) => Encoded::Push(connect(&result)),
            Body::Error(e) => Encoded::Refused(disconnect_for(e)),
            _ => Encoded::Skip,
        },
    }
}

/// `{"disconnect":{"code":..,"reason":".."}}`.
pub fn disconnect(reason: Disconnect) -> Bytes {
    push_body(&disconnect_push(reason.code, reason.reason))
}

/// The disconnect a refused connect becomes, as Centrifugo maps error codes
/// for unidirectional clients (`defaultUniErrorCodeToDisconnect`); Herald's
/// per-user limit is an error, Centrifugo's the connection-limit disconnect.
pub fn disconnect_for(error: Error) -> Disconnect {
    match error {
        Error::TokenExpired | Error::Expired => Disconnect::EXPIRED,
        Error::TooManyRequests => Disconnect::TOO_MANY_REQUESTS,
        Error::PermissionDenied => Disconnect::PERMISSION_DENIED,
        Error::LimitExceeded => CONNECTION_LIMIT,
        _ => Disconnect::SERVER_ERROR,
    }
}

/// Reads a connect request (a JSON object; `null` is an empty request).
pub fn parse_connect(json: &[u8]) -> Result<ConnectRequest, serde_json::Error> {
    serde_json::from_slice::<Option<ConnectRequest>>(json).map(Option::unwrap_or_default)
}

#[derive(Serialize)]
struct ConnectPush<'a> {
    connect: Connect<'a>,
}

/// The connect result of a unidirectional client: it answers no pings, so no `pong`.
#[derive(Serialize)]
struct Connect<'a> {
    client: &'a str,
    version: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    expires: bool,
    #[serde(skip_serializing_if = "is_zero")]
    ttl: u64,
    #[serde(skip_serializing_if = "is_empty")]
    subs: &'a HashMap<String, SubscribeResult>,
    #[serde(skip_serializing_if = "is_zero")]
    ping: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_empty(subs: &&HashMap<String, SubscribeResult>) -> bool {
    subs.is_empty()
}

fn connect(result: &ConnectResult) -> Bytes {
    let push = ConnectPush {
        connect: Connect {
            client: &result.client,
            version: result.version,
            expires: result.expires,
            ttl: result.ttl,
            subs: &result.subs,
            ping: result.ping,
        },
    };
    Bytes::from(serde_json::to_vec(&push).expect("pushes always serialize"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herald_core::protocol::reply::{Push, Reply};
    use herald_core::protocol::Unsubscribe;
    use herald_core::publication::{encode_publication_push, Publication};
    use serde_json::value::RawValue;

    use super::*;
    use crate::frame::ChannelPush;

    fn text(encoded: Encoded) -> String {
        match encoded {
            Encoded::Push(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn channel_pushes_lose_only_the_wrapper() {
        let publication = Publication {
            offset: 7,
            data: RawValue::from_string(r#"{"n":1}"#.into()).unwrap(),
            info: None,
            tags: None,
            time: 0,
            trace: None,
        };
        let json = encode_publication_push("user:42", &publication);
        let frame = Frame::Channel(Arc::new(ChannelPush::new(
            Arc::from("user:42"),
            7,
            None,
            json.clone(),
        )));
        let push = text(encode(frame));
        assert_eq!(format!("{{\"push\":{push}}}").as_bytes(), &json[..]);
        assert!(push.starts_with(r#"{"channel":"user:42","pub":{"offset":7,"data":{"n":1}"#));
    }

    #[test]
    fn connect_subscribe_ping_and_disconnect_pushes() {
        let mut subs = HashMap::new();
        subs.insert(
            "user:42".to_owned(),
            SubscribeResult {
                recoverable: true,
                recovered: true,
                was_recovering: true,
                epoch: "e".into(),
                offset: 3,
                ..Default::default()
            },
        );
        let reply = Frame::from(Reply {
            id: 1,
            body: Body::Connect(ConnectResult {
                client: "c1".into(),
                version: "1.0.0",
                subs,
                ping: 25,
                pong: true,
                ..Default::default()
            }),
        });
        assert_eq!(
            text(encode(reply)),
            r#"{"connect":{"client":"c1","version":"1.0.0","subs":{"user:42":{"recoverable":true,"epoch":"e","recovered":true,"offset":3,"was_recovering":true}},"ping":25}}"#
        );
        let push = Frame::from(Push::Unsubscribe {
            channel: "c".into(),
            why: Unsubscribe::Server,
        });
        assert_eq!(
            text(encode(push)),
            r#"{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}"#
        );
        assert_eq!(text(encode(Frame::Ping)), "{}");
        assert_eq!(
            &disconnect(Disconnect::INVALID_TOKEN)[..],
            br#"{"disconnect":{"code":3500,"reason":"invalid token"}}"#
        );
    }

    #[test]
    fn a_refused_connect_becomes_centrifugos_disconnect() {
        let refused = |e| {
            encode(Frame::from(Reply {
                id: 1,
                body: Body::Error(e),
            }))
        };
        assert_eq!(
            refused(Error::TokenExpired),
            Encoded::Refused(Disconnect::EXPIRED)
        );
        assert_eq!(
            refused(Error::LimitExceeded),
            Encoded::Refused(CONNECTION_LIMIT)
        );
        assert_eq!(
            refused(Error::Internal),
            Encoded::Refused(Disconnect::SERVER_ERROR)
        );
        let other = Frame::from(Reply {
            id: 2,
            body: Body::Ping(Default::default()),
        });
        assert_eq!(encode(other), Encoded::Skip);
    }

    #[test]
    fn connect_requests_from_json() {
        let r = parse_connect(
            br#"{"token":"t","subs":{"user:1":{"recover":true,"offset":4,"epoch":"e"}},"name":"x"}"#,
        )
        .unwrap();
        assert_eq!(r.token, "t");
        let sub = &r.subs["user:1"];
        assert!(sub.recover && sub.offset == 4 && sub.epoch == "e");
        assert!(parse_connect(b"null").unwrap().token.is_empty());
        assert!(parse_connect(b"{\"token\":").is_err());
        assert!(parse_connect(b"{\"token\":5}").is_err());
    }
}
