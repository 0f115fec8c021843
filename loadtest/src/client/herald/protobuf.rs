//! Herald over the Protobuf format (subprotocol `centrifuge-protobuf`) up to a ready
//! subscriber: connect and subscribe commands as length-delimited `Command` messages in binary
//! WebSocket messages, and their replies. Decoding what follows is
//! `client::herald::protobuf::push`'s.

mod messages;
mod push;

use anyhow::{anyhow, bail};
use jsonwebtoken::EncodingKey;
use prost::Message as _;

use self::messages::{Command, ConnectRequest, Reply, SubscribeRequest, SubscribeResult};
use super::{mint, Subscribe};
use crate::client::conn::{Connection, Message, Payload, Position, Subscribed};

pub use self::push::decode;

/// The WebSocket subprotocol that selects the format.
pub const SUBPROTOCOL: &str = "centrifuge-protobuf";

/// Connects as `user`, checks the personal subscription if asked, subscribes the topic (with
/// recovery when resuming) and returns what the subscribe reply said.
pub async fn setup(
    s: &mut Connection,
    user: &str,
    key: &EncodingKey,
    sub: Subscribe<'_>,
    expect_personal: bool,
) -> anyhow::Result<Option<Subscribed>> {
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: mint(key, user)?,
            name: "loadtest".to_owned(),
        }),
        ..Default::default()
    };
    s.send_binary(&connect.encode_length_delimited_to_vec())
        .await?;
    let connect = await_reply(s, 1)
        .await?
        .connect
        .ok_or_else(|| anyhow!("connect reply without result"))?;
    s.pong = connect.pong;
    let personal = format!("user:{user}");
    if expect_personal && !connect.subs.contains_key(&personal) {
        bail!("connect result lacks the server-side subscription {personal}");
    }
    let Some(channel) = sub.topic else {
        return Ok(None);
    };
    let request = SubscribeRequest {
        channel: channel.to_owned(),
        recover: sub.resume.is_some(),
        epoch: sub.resume.map(|p| p.epoch.clone()).unwrap_or_default(),
        offset: sub.resume.map_or(0, |p| p.offset),
    };
    let subscribe = Command {
        id: 2,
        subscribe: Some(request),
        ..Default::default()
    };
    s.send_binary(&subscribe.encode_length_delimited_to_vec())
        .await?;
    let result = await_reply(s, 2)
        .await?
        .subscribe
        .ok_or_else(|| anyhow!("subscribe reply without result"))?;
    Ok(Some(subscribed(result)?))
}

/// Reads a subscribe result. Publications in a result that recovered nothing (the latest
/// value some namespaces replay on subscribe) are left out: they precede the subscriber's
/// stream.
fn subscribed(r: SubscribeResult) -> anyhow::Result<Subscribed> {
    let recovered = r.was_recovering && r.recovered;
    let publications = if recovered {
        r.publications
            .iter()
            .map(|p| {
                let data: Payload = serde_json::from_slice(&p.data)
                    .map_err(|e| anyhow!("recovered publication: {e}"))?;
                Ok((data, (p.offset > 0).then_some(p.offset)))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(Subscribed {
        position: Position {
            epoch: r.epoch,
            offset: r.offset,
        },
        was_recovering: r.was_recovering,
        recovered,
        publications,
    })
}

/// Waits for the reply to command `id`, answering pings meanwhile. What follows the reply in
/// the same message is kept in [`Connection::pending`] for the receive loop.
async fn await_reply(s: &mut Connection, id: u32) -> anyhow::Result<Reply> {
    loop {
        let data = match s.recv().await? {
            Message::Binary(data) => data,
            Message::Text(t) => bail!("text message on a Protobuf connection: {t:?}"),
        };
        let scan = scan_for_reply(&data, id)?;
        for _ in 0..scan.pings {
            s.pong().await?;
        }
        if let Some(reply) = scan.reply {
            s.pending = scan.rest.map(Message::Binary);
            return Ok(reply);
        }
    }
}

/// One message read while waiting for a reply.
#[derive(Debug, PartialEq)]
struct Scan {
    /// The reply, if the message holds it.
    reply: Option<Reply>,
    /// Server pings before it.
    pings: usize,
    /// The replies after it (the server batches them: publications released right after a
    /// subscribe reply often share its message), still length-delimited.
    rest: Option<Vec<u8>>,
}

/// Looks for the reply to command `id` among the length-delimited replies of `data`; an
/// error reply fails.
fn scan_for_reply(mut data: &[u8], id: u32) -> anyhow::Result<Scan> {
    let mut scan = Scan {
        reply: None,
        pings: 0,
        rest: None,
    };
    while !data.is_empty() {
        let bytes =
            push::delimited(&mut data).ok_or_else(|| anyhow!("truncated Protobuf message"))?;
        if bytes.is_empty() {
            scan.pings += 1;
            continue;
        }
        let reply = Reply::decode(bytes)?;
        if reply.id == id {
            if let Some(e) = reply.error {
                bail!("command {id} failed: {} {}", e.code, e.message);
            }
            scan.rest = (!data.is_empty()).then(|| data.to_vec());
            scan.reply = Some(reply);
            break;
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::messages::{Error, Publication};
    use super::*;
    use crate::client::conn::Event;

    fn delimited(replies: &[Reply]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in replies {
            r.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    fn publication(seq: u64, offset: u64) -> Publication {
        Publication {
            data: format!("{{\"seq\":{seq},\"ts\":1}}").into_bytes(),
            offset,
        }
    }

    #[test]
    fn what_follows_a_reply_in_its_message_is_kept() {
        let mut frame = vec![0];
        frame.extend(delimited(&[Reply {
            id: 2,
            subscribe: Some(SubscribeResult {
                offset: 3,
                ..Default::default()
            }),
            ..Default::default()
        }]));
        frame.push(0);
        let scan = scan_for_reply(&frame, 2).unwrap();
        assert_eq!(scan.pings, 1);
        assert_eq!(scan.reply.unwrap().subscribe.unwrap().offset, 3);
        let mut out = Vec::new();
        decode(&scan.rest.unwrap(), &mut out);
        assert_eq!(out, vec![Event::Ping]);
        let other = delimited(&[Reply {
            id: 7,
            ..Default::default()
        }]);
        assert!(scan_for_reply(&other, 2).unwrap().reply.is_none());
        let failed = delimited(&[Reply {
            id: 2,
            error: Some(Error {
                code: 103,
                message: "permission denied".into(),
            }),
            ..Default::default()
        }]);
        let e = scan_for_reply(&failed, 2).unwrap_err();
        assert!(e.to_string().contains("103"), "{e}");
        assert!(scan_for_reply(&[5, 1], 2).is_err(), "truncated");
    }

    #[test]
    fn recovered_publications_come_from_a_recovering_result_only() {
        let result = SubscribeResult {
            epoch: "e1".into(),
            offset: 12,
            was_recovering: true,
            recovered: true,
            publications: vec![publication(9, 11), publication(10, 12)],
        };
        let s = subscribed(result.clone()).unwrap();
        assert_eq!(
            s.position,
            Position {
                epoch: "e1".into(),
                offset: 12
            }
        );
        assert_eq!(
            s.publications,
            vec![
                (Payload { seq: 9, ts: 1 }, Some(11)),
                (Payload { seq: 10, ts: 1 }, Some(12))
            ]
        );
        let first = SubscribeResult {
            was_recovering: false,
            recovered: false,
            ..result.clone()
        };
        assert!(subscribed(first).unwrap().publications.is_empty());
        let lost = SubscribeResult {
            recovered: false,
            ..result
        };
        let s = subscribed(lost).unwrap();
        assert!(s.was_recovering && !s.recovered && s.publications.is_empty());
    }

    #[test]
    fn commands_are_length_delimited_with_the_published_field_numbers() {
        let c = Command {
            id: 2,
            subscribe: Some(SubscribeRequest {
                channel: "a".into(),
                recover: true,
                epoch: "e".into(),
                offset: 5,
            }),
            ..Default::default()
        };
        // id (1), subscribe (5) { channel (1), recover (3), epoch (6), offset (7) }.
        let want = [
            14, 0x08, 2, 0x2A, 10, 0x0A, 1, b'a', 0x18, 1, 0x32, 1, b'e', 0x38, 5,
        ];
        assert_eq!(c.encode_length_delimited_to_vec(), want);
    }
}
