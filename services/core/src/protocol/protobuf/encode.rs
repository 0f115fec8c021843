//! Protobuf replies and pushes out: the session's typed replies and pushes
//! as length-delimited `Reply` messages, and channel pushes made from the
//! JSON frame the hub encoded (once per publication, by the first Protobuf
//! connection that writes it). Payloads go out as their JSON text's bytes.

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;

use super::proto;
use crate::protocol::reply::{self, Body, Push, Reply, SubscribeResult};
use crate::publication::{ClientInfo, Publication, RawJson};

/// The server's ping: an empty `Reply`, length-delimited (a zero length).
pub const PING: &[u8] = &[0];

/// A reply to one of the client's commands.
pub fn encode_reply(reply: &Reply) -> Bytes {
    let mut out = proto::Reply {
        id: reply.id,
        ..Default::default()
    };
    match &reply.body {
        Body::Error(e) => {
            out.error = Some(proto::Error {
                code: e.code(),
                message: e.message().to_owned(),
                temporary: e.temporary(),
            });
        }
        Body::Connect(r) => {
            out.connect = Some(proto::ConnectResult {
                client: r.client.clone(),
                version: r.version.to_owned(),
                expires: r.expires,
                ttl: saturate(r.ttl),
                subs: r
                    .subs
                    .iter()
                    .map(|(channel, s)| (channel.clone(), subscribe_result(s)))
                    .collect(),
                ping: saturate(r.ping),
                pong: r.pong,
                session: r.session.clone(),
                node: r.node.clone(),
                ..Default::default()
            });
        }
        Body::Subscribe(r) => out.subscribe = Some(subscribe_result(r)),
        Body::Unsubscribe(reply::Empty {}) => out.unsubscribe = Some(proto::UnsubscribeResult {}),
        Body::Publish(reply::Empty {}) => out.publish = Some(proto::PublishResult {}),
        Body::Presence(r) => {
            out.presence = Some(proto::PresenceResult {
                presence: r
                    .presence
                    .iter()
                    .map(|(client, info)| (client.clone(), client_info(info)))
                    .collect(),
            });
        }
        Body::PresenceStats(r) => {
            out.presence_stats = Some(proto::PresenceStatsResult {
                num_clients: saturate(r.num_clients),
                num_users: saturate(r.num_users),
            });
        }
        Body::History(r) => {
            out.history = Some(proto::HistoryResult {
                publications: r.publications.iter().map(publication).collect(),
                epoch: r.epoch.clone(),
                offset: r.offset,
            });
        }
        Body::Ping(reply::Empty {}) => out.ping = Some(proto::PingResult {}),
        Body::Rpc(reply::Empty {}) => out.rpc = Some(proto::RpcResult::default()),
        Body::Refresh(r) => {
            out.refresh = Some(proto::RefreshResult {
                client: r.client.clone(),
                version: r.version.to_owned(),
                expires: r.expires,
                ttl: saturate(r.ttl),
            });
        }
        Body::SubRefresh(r) => {
            out.sub_refresh = Some(proto::SubRefreshResult {
                expires: r.expires,
                ttl: saturate(r.ttl),
            });
        }
    }
    delimited(&out)
}

/// A push of the session's own. A server-side subscribe push carries the
/// schema's `Subscribe` (position, no publications: SDKs read none there).
pub fn encode_push(push: &Push) -> Bytes {
    let out = match push {
        Push::Subscribe { channel, result } => proto::Push {
            channel: channel.clone(),
            subscribe: Some(proto::Subscribe {
                recoverable: result.recoverable,
                epoch: result.epoch.clone(),
                offset: result.offset,
                positioned: result.positioned,
                data: Bytes::new(),
            }),
            ..Default::default()
        },
        Push::Unsubscribe { channel, why } => proto::Push {
            channel: channel.clone(),
            unsubscribe: Some(proto::Unsubscribe {
                code: why.code(),
                reason: why.reason().to_owned(),
            }),
            ..Default::default()
        },
    };
    push_reply(out)
}

/// A disconnect notice, for transports without close frames (the
/// emulation's HTTP stream).
pub fn disconnect_push(code: u16, reason: &str) -> Bytes {
    push_reply(proto::Push {
        disconnect: Some(proto::Disconnect {
            code: u32::from(code),
            reason: reason.to_owned(),
            reconnect: false,
        }),
        ..Default::default()
    })
}

/// A JSON channel push frame as [`crate::publication`] encodes it.
#[derive(Deserialize)]
struct JsonFrame {
    push: JsonPush,
}

#[derive(Deserialize)]
struct JsonPush {
    channel: String,
    #[serde(rename = "pub")]
    publication: Option<Publication>,
    join: Option<JsonInfo>,
    leave: Option<JsonInfo>,
}

#[derive(Deserialize)]
struct JsonInfo {
    info: ClientInfo,
}

/// The Protobuf form of a channel push frame (publication, join or leave)
/// that [`crate::publication`] encoded as JSON.
///
/// # Panics
/// On a frame not made by [`crate::publication`]'s encoders.
pub fn channel_push_from_json(json: &[u8]) -> Bytes {
    let frame: JsonFrame = serde_json::from_slice(json).expect("a channel push frame");
    let push = frame.push;
    push_reply(proto::Push {
        channel: push.channel,
        r#pub: push.publication.as_ref().map(publication),
        join: push.join.map(|j| proto::Join {
            info: Some(client_info(&j.info)),
        }),
        leave: push.leave.map(|l| proto::Leave {
            info: Some(client_info(&l.info)),
        }),
        ..Default::default()
    })
}

fn push_reply(push: proto::Push) -> Bytes {
    delimited(&proto::Reply {
        push: Some(push),
        ..Default::default()
    })
}

fn delimited(reply: &proto::Reply) -> Bytes {
    Bytes::from(reply.encode_length_delimited_to_vec())
}

fn subscribe_result(r: &SubscribeResult) -> proto::SubscribeResult {
    proto::SubscribeResult {
        expires: r.expires,
        ttl: saturate(r.ttl),
        recoverable: r.recoverable,
        epoch: r.epoch.clone(),
        publications: r.publications.iter().map(publication).collect(),
        recovered: r.recovered,
        offset: r.offset,
        positioned: r.positioned,
        was_recovering: r.was_recovering,
        ..Default::default()
    }
}

fn publication(p: &Publication) -> proto::Publication {
    proto::Publication {
        data: raw(&p.data),
        info: p.info.as_ref().map(client_info),
        offset: p.offset,
        tags: p
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        time: p.time,
        ..Default::default()
    }
}

fn client_info(i: &ClientInfo) -> proto::ClientInfo {
    proto::ClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: i.conn_info.as_ref().map_or_else(Bytes::new, raw),
        chan_info: i.chan_info.as_ref().map_or_else(Bytes::new, raw),
    }
}

fn raw(json: &RawJson) -> Bytes {
    Bytes::copy_from_slice(json.get().as_bytes())
}

/// Seconds and counts the schema holds in 32 bits.
fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Error, Unsubscribe};
    use crate::publication::{encode_join_push, encode_publication_push};
    use serde_json::value::RawValue;

    fn decode(frame: &[u8]) -> proto::Reply {
        proto::Reply::decode_length_delimited(frame).unwrap()
    }

    #[test]
    fn ping_is_an_empty_reply() {
        assert_eq!(PING, &delimited(&proto::Reply::default())[..]);
    }

    #[test]
    fn replies_carry_ids_results_and_errors() {
        let r = decode(&encode_reply(&Reply {
            id: 7,
            body: Body::Error(Error::Internal),
        }));
        assert_eq!(r.id, 7);
        let e = r.error.unwrap();
        assert_eq!(
            (e.code, e.message.as_str(), e.temporary),
            (100, "internal server error", true)
        );
        let r = decode(&encode_reply(&Reply {
            id: 1,
            body: Body::Publish(reply::Empty {}),
        }));
        assert!(r.publish.is_some() && r.error.is_none());
        let push = decode(&encode_push(&Push::Unsubscribe {
            channel: "c".into(),
            why: Unsubscribe::Server,
        }));
        assert_eq!(push.id, 0);
        let unsub = push.push.unwrap();
        assert_eq!(unsub.channel, "c");
        assert_eq!(unsub.unsubscribe.unwrap().code, 2000);
    }

    #[test]
    fn emulation_connect_results_name_session_and_node_and_disconnects_are_pushes() {
        let r = decode(&encode_reply(&Reply {
            id: 1,
            body: Body::Connect(reply::ConnectResult {
                session: "s".into(),
                node: "n".into(),
                ..Default::default()
            }),
        }));
        let connect = r.connect.unwrap();
        assert_eq!(
            (connect.session.as_str(), connect.node.as_str()),
            ("s", "n")
        );
        let d = decode(&disconnect_push(3001, "shutdown")).push.unwrap();
        let d = d.disconnect.unwrap();
        assert_eq!((d.code, d.reason.as_str()), (3001, "shutdown"));
    }

    #[test]
    fn channel_pushes_match_their_json_frames() {
        let p = Publication {
            offset: 15,
            data: RawValue::from_string(r#"{"text":"hi \"x\""}"#.into()).unwrap(),
            info: None,
            tags: Some([("k".to_owned(), "v".to_owned())].into()),
            time: 1_700_000_000_000,
            trace: None,
        };
        let r = decode(&channel_push_from_json(&encode_publication_push(
            "chat:é", &p,
        )));
        let push = r.push.unwrap();
        assert_eq!(push.channel, "chat:é");
        let publication = push.r#pub.unwrap();
        assert_eq!(&publication.data[..], br#"{"text":"hi \"x\""}"#);
        assert_eq!(publication.offset, 15);
        assert_eq!(publication.time, 1_700_000_000_000);
        assert_eq!(publication.tags["k"], "v");
        let info = ClientInfo {
            user: "42".into(),
            client: "c".into(),
            conn_info: Some(RawValue::from_string("[1]".into()).unwrap()),
            chan_info: None,
        };
        let join = decode(&channel_push_from_json(&encode_join_push("c:1", &info)));
        let info = join.push.unwrap().join.unwrap().info.unwrap();
        assert_eq!(
            (info.user.as_str(), &info.conn_info[..]),
            ("42", &b"[1]"[..])
        );
    }
}
