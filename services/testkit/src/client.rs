//! A raw WebSocket client of the Centrifugo JSON protocol: sends commands with
//! ids, splits newline-batched frames, keeps pushes apart from replies, and
//! reports the close code. Every wait has a deadline.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One protocol connection.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inbox: VecDeque<Value>,
    next_id: u64,
    /// Server pings seen (and answered when `answer_pings`).
    pub pings: u64,
    /// Answer server pings with `{}`.
    pub answer_pings: bool,
    closed: Option<(u16, String)>,
}

impl Client {
    /// Opens a connection (no `connect` command yet).
    pub async fn open(url: &str) -> anyhow::Result<Client> {
        Client::open_with_origin(url, None).await
    }

    /// Opens a connection with an `Origin` header.
    pub async fn open_with_origin(url: &str, origin: Option<&str>) -> anyhow::Result<Client> {
        let mut req = url.into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client::with(ws))
    }

    /// Opens a `wss://` connection to `addr` (as `localhost`) with the TLS client `config`.
    pub async fn open_tls(
        addr: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let port = addr.rsplit(':').next().unwrap_or_default();
        let url = format!("wss://localhost:{port}/connection/websocket");
        let connector = tokio_tungstenite::Connector::Rustls(config);
        let (ws, _) =
            tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector))
                .await?;
        Ok(Client::with(ws))
    }

    fn with(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            inbox: VecDeque::new(),
            next_id: 0,
            pings: 0,
            answer_pings: true,
            closed: None,
        }
    }

    /// Opens and connects with `token`; returns the client and the connect result.
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<(Client, Value)> {
        let mut c = Client::open(url).await?;
        let reply = c.command(json!({ "connect": { "token": token } })).await?;
        let result = reply
            .get("connect")
            .cloned()
            .with_context(|| format!("connect failed: {reply}"))?;
        Ok((c, result))
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a command with a fresh id and waits for its reply.
    pub async fn command(&mut self, mut body: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        body["id"] = json!(id);
        self.send_raw(&body.to_string()).await?;
        self.wait_for(|m| m.get("id").and_then(Value::as_u64) == Some(id))
            .await
    }

    /// The next push (a message with `push`).
    pub async fn next_push(&mut self) -> anyhow::Result<Value> {
        self.wait_for(|m| m.get("push").is_some())
            .await
            .map(|m| m["push"].clone())
    }

    /// Waits for the first message matching `pred`, keeping the others.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(pos) = self.inbox.iter().position(&pred) {
                return Ok(self.inbox.remove(pos).expect("present"));
            }
            if let Some((code, reason)) = &self.closed {
                bail!("connection closed ({code} {reason}) while waiting");
            }
            tokio::time::timeout_at(deadline, self.read_one())
                .await
                .context("timed out waiting for a message")??;
        }
    }

    /// Reads until `n` server pings have arrived in all.
    pub async fn wait_pings(&mut self, n: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.pings < n {
            if let Some((code, reason)) = &self.closed {
                bail!("connection closed ({code} {reason}) while waiting for pings");
            }
            tokio::time::timeout_at(deadline, self.read_one())
                .await
                .context("timed out waiting for pings")??;
        }
        Ok(())
    }

    /// Waits for the server to close; returns the close code and reason.
    pub async fn closed(&mut self) -> anyhow::Result<(u16, String)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.closed.is_none() {
            tokio::time::timeout_at(deadline, self.read_one())
                .await
                .context("timed out waiting for close")??;
        }
        Ok(self.closed.clone().expect("set"))
    }

    async fn read_one(&mut self) -> anyhow::Result<()> {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => {
                for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                    let value: Value =
                        serde_json::from_str(line).with_context(|| format!("bad frame {line}"))?;
                    if value.as_object().is_some_and(|o| o.is_empty()) {
                        self.pings += 1;
                        if self.answer_pings {
                            self.ws.send(Message::text("{}")).await?;
                        }
                    } else {
                        self.inbox.push_back(value);
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(frame.map_or((1005, String::new()), |f| {
                    (f.code.into(), f.reason.to_string())
                }));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if self.closed.is_none() {
                    self.closed = Some((1006, e.to_string()));
                }
            }
            None => {
                if self.closed.is_none() {
                    self.closed = Some((1006, "eof".into()));
                }
            }
        }
        Ok(())
    }
}
