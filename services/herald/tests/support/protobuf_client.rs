//! A raw WebSocket client of the Centrifugo Protobuf protocol, built on the
//! schema's generated types: sends length-delimited commands with ids in
//! binary frames, splits frames of several replies, answers pings (empty
//! replies) with empty commands, keeps pushes apart from replies, and reports
//! the close code. Every wait has a deadline.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use futures_util::{SinkExt, StreamExt};
use herald_core::protocol::protobuf::proto;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// How a client asks for the Protobuf format.
#[derive(Clone, Copy)]
pub enum Ask {
    /// `Sec-WebSocket-Protocol: centrifuge-protobuf`, as centrifuge-js and centrifuge-python do.
    Subprotocol,
    /// `?format=protobuf` in the URL.
    Query,
}

/// One Protobuf protocol connection.
pub struct ProtoClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inbox: VecDeque<proto::Reply>,
    next_id: u32,
    /// Server pings seen (each answered).
    pub pings: u64,
    closed: Option<(u16, String)>,
}

impl ProtoClient {
    /// Opens a connection (no `connect` command yet).
    pub async fn open(url: &str, ask: Ask) -> anyhow::Result<ProtoClient> {
        let req = match ask {
            Ask::Subprotocol => {
                let mut req = url.into_client_request()?;
                req.headers_mut()
                    .insert("sec-websocket-protocol", "centrifuge-protobuf".parse()?);
                req
            }
            Ask::Query => format!("{url}?format=protobuf").into_client_request()?,
        };
        let (ws, response) = tokio_tungstenite::connect_async(req).await?;
        let echoed = response.headers().get("sec-websocket-protocol");
        match ask {
            Ask::Subprotocol => ensure!(
                echoed.is_some_and(|p| p == "centrifuge-protobuf"),
                "subprotocol not echoed: {echoed:?}"
            ),
            Ask::Query => ensure!(echoed.is_none(), "no subprotocol was asked for"),
        }
        Ok(ProtoClient {
            ws,
            inbox: VecDeque::new(),
            next_id: 0,
            pings: 0,
            closed: None,
        })
    }

    /// Opens and connects with `token`; returns the client and the connect result.
    pub async fn connect(
        url: &str,
        ask: Ask,
        token: &str,
    ) -> anyhow::Result<(ProtoClient, proto::ConnectResult)> {
        let mut c = ProtoClient::open(url, ask).await?;
        let reply = c
            .command(proto::Command {
                connect: Some(proto::ConnectRequest {
                    token: token.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        let result = reply
            .connect
            .with_context(|| format!("connect failed: {:?}", reply.error))?;
        Ok((c, result))
    }

    /// Sends one binary frame.
    pub async fn send_raw(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::binary(frame)).await?;
        Ok(())
    }

    /// Sends commands as they are (ids included) in one frame.
    pub async fn send(&mut self, commands: &[proto::Command]) -> anyhow::Result<()> {
        let mut frame = Vec::new();
        for c in commands {
            c.encode_length_delimited(&mut frame)?;
        }
        self.send_raw(frame).await
    }

    /// Sends a command with a fresh id and waits for its reply.
    pub async fn command(&mut self, mut command: proto::Command) -> anyhow::Result<proto::Reply> {
        self.next_id += 1;
        let id = self.next_id;
        command.id = id;
        self.send(&[command]).await?;
        self.wait_for(|r| r.id == id).await
    }

    /// The next push.
    pub async fn next_push(&mut self) -> anyhow::Result<proto::Push> {
        let reply = self.wait_for(|r| r.id == 0 && r.push.is_some()).await?;
        Ok(reply.push.expect("matched"))
    }

    /// Waits for the first reply matching `pred`, keeping the others.
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&proto::Reply) -> bool,
    ) -> anyhow::Result<proto::Reply> {
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
                .context("timed out waiting for a reply")??;
        }
    }

    /// Whether every reply read so far was taken.
    pub fn inbox_is_empty(&self) -> bool {
        self.inbox.is_empty()
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
            Some(Ok(Message::Binary(frame))) => {
                let mut rest = &frame[..];
                ensure!(!rest.is_empty(), "empty binary frame");
                while !rest.is_empty() {
                    let reply = proto::Reply::decode_length_delimited(&mut rest)
                        .context("a frame of length-delimited replies")?;
                    if reply == proto::Reply::default() {
                        self.pings += 1;
                        self.send(&[proto::Command::default()]).await?;
                    } else {
                        self.inbox.push_back(reply);
                    }
                }
            }
            Some(Ok(Message::Text(text))) => bail!("text frame on a Protobuf connection: {text}"),
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
