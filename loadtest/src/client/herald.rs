//! Herald (Centrifugo client protocol, JSON): HS256 connection tokens, the connect and subscribe
//! commands, and decoding of `\n`-batched reply frames. Only what the load generator needs.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Connection, Event, Payload};

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
        let personal = format!("user:{user}");
        if connect
            .get("subs")
            .and_then(|subs| subs.get(&personal))
            .is_none()
        {
            bail!("connect reply lacks the server-side subscription {personal}: {reply}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

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
