//! `herald selftest`: an end-to-end check of a running deployment, for the
//! Helm chart's test pod. It connects a WebSocket client with a token minted
//! for a fresh user, subscribes a fresh channel, publishes into it through the
//! server API and waits for the publication. It checks a deployment; it never
//! serves one.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::namespace::{SubscribePolicy, DEFAULT};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cli::SelftestArgs;
use crate::settings::Settings;

/// The step a self-test failed at, and why.
#[derive(Debug)]
pub struct Failure {
    step: &'static str,
    reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "selftest failed at {}: {}", self.step, self.reason)
    }
}

fn fail(step: &'static str, reason: impl fmt::Display) -> Failure {
    Failure {
        step,
        reason: reason.to_string(),
    }
}

/// Runs the check; returns the line to print on success.
pub async fn run(settings: &Settings, args: &SelftestArgs) -> Result<String, Failure> {
    let deadline = Instant::now() + args.timeout;
    let key = settings.api.key.as_deref().filter(|k| !k.is_empty());
    let key = key.ok_or_else(|| fail("configuration", "api.key is not set (HERALD_API__KEY)"))?;
    let secret = settings.auth.hmac_secret.as_deref().ok_or_else(|| {
        fail(
            "configuration",
            "auth.hmac_secret is not set (HERALD_AUTH__HMAC_SECRET)",
        )
    })?;
    let namespaces = settings.namespaces();
    let open = |ns: &str| {
        namespaces.get(ns).is_some_and(|o| {
            matches!(
                o.subscribe,
                SubscribePolicy::Any | SubscribePolicy::Anonymous
            )
        })
    };
    let nonce = format!("{:016x}", rand::random::<u64>());
    let channel = match (open(DEFAULT), open("stock")) {
        (true, _) => format!("selftest-{nonce}"),
        (false, true) => format!("stock:selftest-{nonce}"),
        _ => {
            return Err(fail(
                "configuration",
                "neither the default nor the stock namespace lets any client subscribe",
            ))
        }
    };
    let user = format!("selftest-{nonce}");
    let token = herald_core::auth::mint_connect(secret, &user, Some(args.timeout * 2), vec![]);

    let mut ws = within(deadline, "connect", Ws::open(&args.ws)).await?;
    let reply = within(
        deadline,
        "connect",
        ws.command(1, json!({ "token": token }), "connect"),
    )
    .await?;
    answer(&reply, "connect", "connect")?;
    let request = json!({ "channel": channel });
    let reply = within(deadline, "subscribe", ws.command(2, request, "subscribe")).await?;
    answer(&reply, "subscribe", "subscribe")?;

    let sent = Instant::now();
    let url = format!("{}/api/publish", args.api.trim_end_matches('/'));
    let body = json!({ "channel": channel, "data": { "selftest": nonce } });
    within(deadline, "publish", publish(&url, key, &body)).await?;
    let is_ours = |push: &Value| {
        push["channel"] == channel.as_str() && push["pub"]["data"]["selftest"] == nonce.as_str()
    };
    within(deadline, "receive", ws.push(is_ours)).await?;
    let round_trip = sent.elapsed();
    ws.close().await;
    Ok(format!(
        "selftest ok: user {user} connected to {}, subscribed {channel}, published through {url}, \
         received the publication {:.1} ms after publishing",
        args.ws,
        round_trip.as_secs_f64() * 1000.0
    ))
}

/// Runs one step of the check before the deadline.
async fn within<T>(
    deadline: Instant,
    step: &'static str,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, Failure> {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result.map_err(|reason| fail(step, reason)),
        Err(_) => Err(fail(step, "no answer before the selftest timeout")),
    }
}

/// Checks that a reply carries `field`, not an error.
fn answer(reply: &Value, field: &str, step: &'static str) -> Result<(), Failure> {
    if reply.get(field).is_some() {
        return Ok(());
    }
    let error = &reply["error"];
    Err(fail(
        step,
        format!(
            "error {} {}",
            error["code"],
            error["message"].as_str().unwrap_or("")
        ),
    ))
}

async fn publish(url: &str, key: &str, body: &Value) -> Result<(), String> {
    let response = reqwest::Client::new()
        .post(url)
        .header("X-API-Key", key)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() && answer.get("result").is_some() {
        return Ok(());
    }
    let text: String = text.chars().take(200).collect();
    Err(format!("{url} answered {status}: {}", text.trim()))
}

/// A minimal client of the Centrifugo JSON protocol.
struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inbox: VecDeque<Value>,
}

impl Ws {
    async fn open(url: &str) -> Result<Ws, String> {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Ws {
            stream,
            inbox: VecDeque::new(),
        })
    }

    /// Sends command `method` with `id` and returns its reply.
    async fn command(&mut self, id: u32, params: Value, method: &str) -> Result<Value, String> {
        let frame = json!({ "id": id, method: params }).to_string();
        self.stream
            .send(Message::text(frame))
            .await
            .map_err(|e| e.to_string())?;
        self.next(|m| m["id"] == id).await
    }

    /// Waits for a push matching `wanted`.
    async fn push(&mut self, wanted: impl Fn(&Value) -> bool) -> Result<Value, String> {
        self.next(|m| wanted(&m["push"])).await
    }

    /// The first message matching `wanted`; server pings are answered.
    async fn next(&mut self, wanted: impl Fn(&Value) -> bool) -> Result<Value, String> {
        loop {
            if let Some(i) = self.inbox.iter().position(&wanted) {
                return Ok(self.inbox.remove(i).expect("present"));
            }
            let text = match self.stream.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or("connection closed".into(), |f| {
                        format!("connection closed: {} {}", f.code, f.reason)
                    }))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            };
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                let message: Value = serde_json::from_str(line)
                    .map_err(|e| format!("unreadable message {line}: {e}"))?;
                if message.as_object().is_some_and(|o| o.is_empty()) {
                    let _ = self.stream.send(Message::text("{}")).await;
                } else {
                    self.inbox.push_back(message);
                }
            }
        }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.close(None)).await;
    }
}
