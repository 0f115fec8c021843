//! An open connection of the run and what the clients say about it: the protocol and transport
//! under it, the topic subscription its handshake left, and the publications and control events
//! decoded from its messages. Opening one is `client::dial`'s; decoding, each protocol's.

use std::io;
use std::sync::Arc;

use anyhow::bail;
use serde::Deserialize;

use super::sse::SseConn;
use super::wire::{Msg, WsConn};
use crate::cli::Target;

/// Wire protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Centrifugo client protocol, JSON, `\n`-batched replies.
    Herald,
    /// Centrifugo client protocol, Protobuf (subprotocol `centrifuge-protobuf`): binary
    /// messages of varint-length-delimited replies.
    HeraldProtobuf,
    /// Herald's Server-Sent Events: one-way, token and topics in the query string.
    HeraldSse,
    /// Engine.IO v4 / Socket.IO v5 over WebSocket.
    Socketio,
    /// Plain JSON frames of the `ws` peer.
    Ws,
    /// `floor`: no handshake; the server writes Herald-shaped push frames to raw sockets.
    Raw,
}

impl From<Target> for Proto {
    fn from(t: Target) -> Self {
        match t {
            Target::Herald => Proto::Herald,
            Target::Socketio => Proto::Socketio,
            Target::Ws => Proto::Ws,
        }
    }
}

/// The `{"seq":N,"ts":<unix micros>}` data the load generator publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Payload {
    /// Publication number.
    pub seq: u64,
    /// Send time, microseconds since the Unix epoch.
    pub ts: u64,
}

/// Something a frame asked of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A publication arrived, with its offset in the channel's stream when the server gives one.
    Pub(Payload, Option<u64>),
    /// The server pinged at the protocol level ([`Connection::pong`] answers).
    Ping,
    /// The server ended the connection at the protocol level: disconnect code (if any), reason.
    Closed(Option<u16>, String),
}

/// The transport under a connection.
pub enum Io {
    /// WebSocket (also raw floor sockets, which carry WebSocket frames).
    Ws(WsConn),
    /// Server-Sent Events: receive only.
    Sse(SseConn),
}

impl Io {
    /// Next complete message already received, without IO.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Msg<'_>>> {
        match self {
            Io::Ws(c) => c.next_message(),
            Io::Sse(c) => c.next_message(),
        }
    }

    /// Reads whatever is available (waiting for readability); `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        match self {
            Io::Ws(c) => c.fill().await,
            Io::Sse(c) => c.fill().await,
        }
    }

    /// Writes queued control frames (WebSocket pongs).
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Ws(c) => c.flush().await,
            Io::Sse(_) => Ok(()),
        }
    }
}

/// Position of a topic when a Server-Sent Events subscription started: publications at or
/// below it are history replayed with the subscription, not publications of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The topic.
    pub channel: Arc<str>,
    /// Its offset in the subscribe event.
    pub offset: u64,
}

/// A whole message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text.
    Text(String),
    /// Binary.
    Binary(Vec<u8>),
}

/// An established connection, subscribed and ready to receive.
pub struct Connection {
    /// The transport.
    pub io: Io,
    /// Protocol spoken on it.
    pub proto: Proto,
    /// Herald: whether server pings must be answered (connect result `pong`).
    pub pong: bool,
    /// Server-Sent Events: the replayed part of the topic, left out of the deliveries.
    pub replayed: Option<Replayed>,
    /// Herald over WebSocket: the topic subscription as its reply described it.
    pub subscribed: Option<Subscribed>,
    /// What arrived after the last reply of the handshake in the same message, for the
    /// receive loop to decode first.
    pub pending: Option<Message>,
    /// Which of the dialer's nodes it is connected to.
    pub via: usize,
}

impl Connection {
    /// A connection of `proto` over `io`, before its handshake.
    pub fn new(io: Io, proto: Proto) -> Self {
        Connection {
            io,
            proto,
            pong: false,
            replayed: None,
            subscribed: None,
            pending: None,
            via: 0,
        }
    }

    /// Sends one text message (WebSocket only).
    pub async fn send(&mut self, text: impl AsRef<str>) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Ws(ws) => ws.send_text(text.as_ref()).await?,
            Io::Sse(_) => bail!("an event stream cannot send"),
        }
        Ok(())
    }

    /// Sends one binary message (WebSocket only).
    pub async fn send_binary(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Ws(ws) => ws.send_binary(data).await?,
            Io::Sse(_) => bail!("an event stream cannot send"),
        }
        Ok(())
    }

    /// Answers a server ping with the protocol's pong, if the protocol asks for one: Socket.IO
    /// always (`3`), Herald when the connect result said `pong` (an empty reply: `{}` in JSON,
    /// the empty command, a zero length byte, in Protobuf).
    pub async fn pong(&mut self) -> anyhow::Result<()> {
        match self.proto {
            Proto::Socketio => self.send("3").await,
            Proto::Herald if self.pong => self.send("{}").await,
            Proto::HeraldProtobuf if self.pong => self.send_binary(&[0]).await,
            _ => Ok(()),
        }
    }

    /// Next text message; WebSocket pings are answered, a close is an error.
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        match self.recv().await? {
            Message::Text(t) => Ok(t),
            Message::Binary(_) => bail!("binary message where text was expected"),
        }
    }

    /// Next message; WebSocket pings are answered, a close is an error.
    pub async fn recv(&mut self) -> anyhow::Result<Message> {
        loop {
            match self.io.next_message()? {
                Some(Msg::Text(t)) => return Ok(Message::Text(t.to_owned())),
                Some(Msg::Binary(b)) => return Ok(Message::Binary(b.to_vec())),
                Some(Msg::Close(code, reason)) => bail!("closed by server: code {code} {reason:?}"),
                None => {}
            }
            self.io.flush().await?;
            if self.io.fill().await? == 0 {
                bail!("connection closed by server");
            }
        }
    }

    /// Closes politely: close frame, then wait briefly for the server to close its side, so that
    /// TIME_WAIT stays on the server and off the load generator's ports.
    /// Raw floor sockets send nothing and only wait for the acceptor to close. An event stream
    /// is simply dropped, which leaves TIME_WAIT on the load generator's side.
    pub async fn close(mut self) {
        match &mut self.io {
            Io::Sse(_) => return,
            Io::Ws(ws) if self.proto != Proto::Raw => {
                if ws.send_close().await.is_err() {
                    return;
                }
            }
            Io::Ws(_) => {}
        }
        let drain = async {
            while let Ok(n) = self.io.fill().await {
                if n == 0 {
                    break;
                }
                while let Ok(Some(_)) = self.io.next_message() {}
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}

/// A position in a channel's stream: its epoch and the offset of the last publication seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The stream's epoch (it changes when the stream restarts, e.g. after its history expired).
    pub epoch: String,
    /// Offset of the last publication.
    pub offset: u64,
}

/// The topic subscription as its subscribe reply described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribed {
    /// Where the reply leaves the subscriber: live publications follow this position.
    pub position: Position,
    /// Whether a recovery was asked for.
    pub was_recovering: bool,
    /// Whether the server recovered everything since the position asked for.
    pub recovered: bool,
    /// The publications recovered (empty unless `recovered`), in stream order.
    pub publications: Vec<(Payload, Option<u64>)>,
}
