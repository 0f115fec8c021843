//! Herald (Centrifugo client protocol, JSON): HS256 connection tokens, the connect and subscribe
//! commands, and decoding of `\n`-batched reply frames; over Server-Sent Events, the events of
//! `/connection/sse` (pushes without the `push` wrapper). Only what the load generator needs.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Connection, Event, Msg, Payload, Replayed};

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

/// Connects as `user`, checks the personal subscription if asked, subscribes `topic`.
pub async fn setup(
    s: &mut Connection,
    user: &str,
    key: &EncodingKey,
    topic: Option<&str>,
    expect_personal: bool,
) -> anyhow::Result<()> {
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
    if let Some(channel) = topic {
        let cmd = json!({"id": 2, "subscribe": {"channel": channel}});
        s.send(cmd.to_string()).await?;
        await_reply(s, 2).await?;
    }
    Ok(())
}

/// Waits for the reply to command `id`, answering pings meanwhile.
async fn await_reply(s: &mut Connection, id: u64) -> anyhow::Result<Value> {
    loop {
        let text = s.recv_text().await?;
        for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line)?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!("command {id} failed: {e}");
                }
                return Ok(v);
            }
            if line == "{}" && s.pong {
                s.send("{}").await?;
            }
        }
    }
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

#[derive(Deserialize)]
struct Frame {
    push: Option<Push>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "pub")]
    publication: Option<Publication>,
    disconnect: Option<Value>,
}

#[derive(Deserialize)]
struct Publication {
    data: Payload,
}

/// Decodes one frame: publications, pings (`{}`, answered with `{}`) and disconnect pushes.
pub fn decode(text: &str, out: &mut Vec<Event>) {
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if line == "{}" {
            out.push(Event::Reply("{}"));
            continue;
        }
        let Ok(Frame { push: Some(push) }) = serde_json::from_str::<Frame>(line) else {
            continue;
        };
        if let Some(p) = push.publication {
            out.push(Event::Pub(p.data));
        } else if let Some(d) = push.disconnect {
            out.push(Event::Closed(format!("disconnect push {d}")));
        }
    }
}

#[derive(Deserialize)]
struct SseEvent<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(rename = "pub")]
    publication: Option<SsePublication>,
    disconnect: Option<Value>,
}

#[derive(Deserialize)]
struct SsePublication {
    data: Payload,
    #[serde(default)]
    offset: u64,
}

/// Decodes the data of one Server-Sent Event: publications (except a replay at or below
/// `replayed`) and disconnects. Pings are comments, which the transport already skipped.
pub fn decode_sse(text: &str, replayed: Option<&Replayed>, out: &mut Vec<Event>) {
    let Ok(event) = serde_json::from_str::<SseEvent<'_>>(text) else {
        return;
    };
    if let Some(p) = event.publication {
        let replay = replayed
            .is_some_and(|r| p.offset <= r.offset && event.channel.as_deref() == Some(&*r.channel));
        if !replay {
            out.push(Event::Pub(p.data));
        }
    } else if let Some(d) = event.disconnect {
        out.push(Event::Closed(format!("disconnect event {d}")));
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
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn sse_events_skip_the_subscribe_replay() {
        let replayed = Replayed {
            channel: Arc::from("stock:LOAD"),
            offset: 9,
        };
        let mut out = Vec::new();
        for text in [
            r#"{"channel":"stock:LOAD","pub":{"offset":9,"data":{"seq":1,"ts":2}}}"#,
            r#"{"channel":"stock:LOAD","pub":{"offset":10,"data":{"seq":3,"ts":4}}}"#,
            r#"{"channel":"user:lt-1","pub":{"offset":2,"data":{"seq":5,"ts":6}}}"#,
            r#"{"channel":"stock:LOAD","subscribe":{"offset":9}}"#,
            r#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#,
        ] {
            decode_sse(text, Some(&replayed), &mut out);
        }
        assert_eq!(out[0], Event::Pub(Payload { seq: 3, ts: 4 }));
        assert_eq!(out[1], Event::Pub(Payload { seq: 5, ts: 6 }));
        assert!(matches!(&out[2], Event::Closed(r) if r.contains("3001")));
        assert_eq!(out.len(), 3);
        out.clear();
        decode_sse(
            r#"{"channel":"stock:LOAD","pub":{"offset":9,"data":{"seq":1,"ts":2}}}"#,
            None,
            &mut out,
        );
        assert_eq!(
            out.len(),
            1,
            "without a replayed position nothing is skipped"
        );
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
