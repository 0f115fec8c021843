//! Herald (Centrifugo client protocol, JSON) up to a ready subscriber: HS256 connection tokens,
//! the connect and subscribe commands and their replies; over Server-Sent Events, the connect
//! and subscribe events of `/connection/sse`. Decoding what follows is `client::herald::decode`;
//! the Protobuf format is `client::herald::protobuf`. Only what the load generator needs.

mod decode;
pub mod protobuf;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};

use self::decode::Publication;
use super::conn::{Connection, Message, Position, Replayed, Subscribed};
use super::wire::Msg;

pub use self::decode::{decode, decode_sse};

/// Connection tokens outlive any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// Mints an HS256 connection token for `user`.
pub fn mint(key: &EncodingKey, user: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: user,
        exp: now + TOKEN_TTL_SECS,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        key,
    )?)
}

/// The topic to subscribe after connecting, and the position to recover from, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subscribe<'a> {
    /// Channel name.
    pub topic: Option<&'a str>,
    /// Recover from here (`recover: true` with its offset and epoch).
    pub resume: Option<&'a Position>,
}

/// Connects as `user`, checks the personal subscription if asked, subscribes the topic (with
/// recovery when resuming) and returns what the subscribe reply said.
pub async fn setup(
    s: &mut Connection,
    user: &str,
    key: &EncodingKey,
    sub: Subscribe<'_>,
    expect_personal: bool,
) -> anyhow::Result<Option<Subscribed>> {
    let token = mint(key, user)?;
    let cmd = json!({"id": 1, "connect": {"token": token, "name": "loadtest"}});
    s.send(cmd.to_string()).await?;
    let reply = await_reply(s, 1).await?;
    let connect = reply
        .get("connect")
        .ok_or_else(|| anyhow!("connect reply without result: {reply}"))?;
    s.pong = connect
        .get("pong")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if expect_personal {
        check_personal(connect, user)?;
    }
    let Some(channel) = sub.topic else {
        return Ok(None);
    };
    let cmd = match sub.resume {
        None => json!({"id": 2, "subscribe": {"channel": channel}}),
        Some(p) => json!({"id": 2, "subscribe": {
            "channel": channel, "recover": true, "offset": p.offset, "epoch": p.epoch,
        }}),
    };
    s.send(cmd.to_string()).await?;
    let reply = await_reply(s, 2).await?;
    Ok(Some(subscribed(&reply)?))
}

/// Reads a subscribe reply. Publications in a reply that recovered nothing (the latest value
/// some namespaces replay on subscribe) are left out: they precede the subscriber's stream.
fn subscribed(reply: &Value) -> anyhow::Result<Subscribed> {
    let r = reply
        .get("subscribe")
        .ok_or_else(|| anyhow!("subscribe reply without result: {reply}"))?;
    let flag = |k: &str| r.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut out = Subscribed {
        position: Position {
            epoch: r
                .get("epoch")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            offset: r.get("offset").and_then(Value::as_u64).unwrap_or(0),
        },
        was_recovering: flag("was_recovering"),
        recovered: flag("was_recovering") && flag("recovered"),
        publications: Vec::new(),
    };
    if out.recovered {
        let pubs = r
            .get("publications")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let pubs: Vec<Publication> =
            serde_json::from_value(pubs).map_err(|e| anyhow!("recovered publications: {e}"))?;
        out.publications = pubs.into_iter().map(|p| (p.data, p.offset)).collect();
    }
    Ok(out)
}

/// Waits for the reply to command `id`, answering pings meanwhile. What follows the reply in
/// the same message is kept in [`Connection::pending`] for the receive loop.
async fn await_reply(s: &mut Connection, id: u64) -> anyhow::Result<Value> {
    loop {
        let text = s.recv_text().await?;
        let scan = scan_for_reply(&text, id)?;
        for _ in 0..scan.pings {
            s.pong().await?;
        }
        if let Some(reply) = scan.reply {
            s.pending = scan.rest.map(Message::Text);
            return Ok(reply);
        }
    }
}

/// One message read while waiting for a reply.
#[derive(Debug, PartialEq)]
struct Scan {
    /// The reply, if the message holds it.
    reply: Option<Value>,
    /// Server pings before it.
    pings: usize,
    /// The lines after it: the server batches frames, and publications released right after a
    /// subscribe reply often share its message.
    rest: Option<String>,
}

/// Looks for the reply to command `id` in a `\n`-batched message; an error reply fails.
fn scan_for_reply(text: &str, id: u64) -> anyhow::Result<Scan> {
    let mut scan = Scan {
        reply: None,
        pings: 0,
        rest: None,
    };
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line == "{}" {
            scan.pings += 1;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)?;
        if v.get("id").and_then(Value::as_u64) == Some(id) {
            if let Some(e) = v.get("error") {
                bail!("command {id} failed: {e}");
            }
            let rest = lines.collect::<Vec<_>>().join("\n");
            scan.rest = (!rest.trim().is_empty()).then_some(rest);
            scan.reply = Some(v);
            break;
        }
    }
    Ok(scan)
}

/// Server-Sent Events: the token and `topic` went in the query string, so the server connects
/// and subscribes before answering. Reads the connect event (checking the personal
/// subscription if asked) and the subscribe event of `topic`. `replay_latest` namespaces put
/// the latest publication right after that event, where the WebSocket client gets it inside
/// the subscribe reply and ignores it; the stream position the event reports is kept so that
/// the receive loop ignores it too.
pub async fn setup_sse(
    s: &mut Connection,
    user: &str,
    topic: Option<&Arc<str>>,
    expect_personal: bool,
) -> anyhow::Result<()> {
    let mut connected = false;
    let mut subscribed = topic.is_none();
    loop {
        while let Some(msg) = s.io.next_message()? {
            let Msg::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text)?;
            if let Some(connect) = v.get("connect") {
                if expect_personal {
                    check_personal(connect, user)?;
                }
                connected = true;
            } else if let (Some(sub), Some(channel)) = (v.get("subscribe"), topic) {
                if v.get("channel").and_then(Value::as_str) == Some(&**channel) {
                    let offset = sub.get("offset").and_then(Value::as_u64).unwrap_or(0);
                    s.replayed = (offset > 0).then(|| Replayed {
                        channel: channel.clone(),
                        offset,
                    });
                    subscribed = true;
                }
            } else if let Some(d) = v.get("disconnect") {
                bail!("disconnected during setup: {d}");
            }
            if connected && subscribed {
                return Ok(());
            }
        }
        if s.io.fill().await? == 0 {
            bail!("event stream ended during setup");
        }
    }
}

/// Fails unless a connect result holds the server-side subscription to `user:<user>`.
fn check_personal(connect: &Value, user: impl std::fmt::Display) -> anyhow::Result<()> {
    let personal = format!("user:{user}");
    if connect
        .get("subs")
        .and_then(|subs| subs.get(&personal))
        .is_none()
    {
        bail!("connect result lacks the server-side subscription {personal}: {connect}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Event, Payload};
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    #[test]
    fn recovered_publications_come_from_a_recovering_reply_only() {
        let reply = json!({"id": 2, "subscribe": {
            "recoverable": true, "epoch": "e1", "offset": 12, "was_recovering": true,
            "recovered": true, "publications": [
                {"data": {"seq": 9, "ts": 1}, "offset": 11},
                {"data": {"seq": 10, "ts": 2}, "offset": 12},
            ],
        }});
        let s = subscribed(&reply).unwrap();
        assert_eq!(
            s.position,
            Position {
                epoch: "e1".into(),
                offset: 12
            }
        );
        assert!(s.recovered && s.was_recovering);
        assert_eq!(
            s.publications,
            vec![
                (Payload { seq: 9, ts: 1 }, Some(11)),
                (Payload { seq: 10, ts: 2 }, Some(12))
            ]
        );
        // A first subscribe replays the latest value: not part of the subscriber's stream.
        let first = json!({"id": 2, "subscribe": {"epoch": "e1", "offset": 3,
            "publications": [{"data": {"seq": 2, "ts": 1}, "offset": 3}]}});
        let s = subscribed(&first).unwrap();
        assert!(!s.recovered && s.publications.is_empty());
        assert_eq!(s.position.offset, 3);
        let lost = json!({"id": 2, "subscribe": {"epoch": "e2", "offset": 40,
            "was_recovering": true, "recovered": false}});
        let s = subscribed(&lost).unwrap();
        assert!(s.was_recovering && !s.recovered);
        assert!(subscribed(&json!({"id": 2})).is_err());
    }

    #[test]
    fn what_follows_a_reply_in_its_message_is_kept() {
        let text = "{}\n{\"id\":2,\"subscribe\":{\"offset\":3}}\n{\"push\":{\"pub\":{\"data\":{\"seq\":4,\"ts\":1},\"offset\":4}}}";
        let scan = scan_for_reply(text, 2).unwrap();
        assert_eq!(scan.pings, 1);
        assert_eq!(scan.reply.unwrap()["subscribe"]["offset"], 3);
        let mut out = Vec::new();
        decode(&scan.rest.unwrap(), &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 4, ts: 1 }, Some(4))]);
        let alone = scan_for_reply("{\"id\":1,\"connect\":{}}\n", 1).unwrap();
        assert_eq!(alone.rest, None);
        assert!(scan_for_reply("{\"id\":7}", 2).unwrap().reply.is_none());
        assert!(scan_for_reply("{\"id\":2,\"error\":{\"code\":103}}", 2).is_err());
    }

    #[test]
    fn tokens_carry_sub_and_exp() {
        #[derive(Deserialize)]
        struct Back {
            sub: String,
            exp: u64,
        }
        let t = mint(&EncodingKey::from_secret(b"s3cret"), "lt-4").unwrap();
        let back = jsonwebtoken::decode::<Back>(
            &t,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(back.claims.sub, "lt-4");
        assert!(back.claims.exp > 1_700_000_000);
    }
}
