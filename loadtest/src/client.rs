//! Clients of the targets: dialing from spread source addresses, the transport (WebSocket in
//! `client::wire`, Server-Sent Events in `client::sse`), the per-protocol handshake
//! (`client::herald`, `client::socketio`, `client::ws`) and decoding of incoming messages into
//! publications and ping answers. Delivery accounting is left to the caller.

mod herald;
mod socketio;
mod sse;
mod wire;
mod ws;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::EncodingKey;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::Target;

pub use herald::{Position, Subscribed};
pub use sse::SseConn;
pub use wire::{Msg, WsConn};

/// Wire protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Centrifugo client protocol, JSON, `\n`-batched replies.
    Herald,
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
    /// Text to send back (a pong).
    Reply(&'static str),
    /// The server ended the connection at the protocol level: disconnect code (if any), reason.
    Closed(Option<u16>, String),
}

/// Everything needed to open a connection of the run.
pub struct Dialer {
    /// Protocol to speak.
    pub proto: Proto,
    dest: SocketAddr,
    host: String,
    path: String,
    sources: Vec<Ipv4Addr>,
    next_source: AtomicUsize,
    key: Option<EncodingKey>,
    topic: Option<Arc<str>>,
    expect_personal: bool,
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

/// An established connection, subscribed and ready to receive.
pub struct Connection {
    /// The transport.
    pub io: Io,
    /// Protocol spoken on it.
    pub proto: Proto,
    /// Whether server pings must be answered (Herald: connect result `pong`).
    pub pong: bool,
    /// Server-Sent Events: the replayed part of the topic, left out of the deliveries.
    pub replayed: Option<Replayed>,
    /// Herald over WebSocket: the topic subscription as its reply described it.
    pub subscribed: Option<Subscribed>,
    /// Text that arrived after the last reply of the handshake in the same message, for the
    /// receive loop to decode first.
    pub pending: Option<String>,
}

impl Dialer {
    /// Builds a dialer for `url` (resolved once; the WebSocket URL, or the event stream URL for
    /// `Proto::HeraldSse`). `topic` is subscribed after connecting; `expect_personal` checks
    /// the personal channel is part of the Herald connect reply.
    pub async fn new(
        proto: Proto,
        url: &str,
        sources: Vec<Ipv4Addr>,
        hmac_secret: &str,
        topic: Option<String>,
        expect_personal: bool,
    ) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("no host in {url:?}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let dest = tokio::net::lookup_host((host, port))
            .await?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{host} has no IPv4 address"))?;
        if matches!(proto, Proto::Herald | Proto::HeraldSse) && hmac_secret.is_empty() {
            bail!("--hmac-secret is required for the herald target");
        }
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        Ok(Dialer {
            proto,
            dest,
            host: format!("{host}:{port}"),
            path,
            sources,
            next_source: AtomicUsize::new(0),
            key: (!hmac_secret.is_empty())
                .then(|| EncodingKey::from_secret(hmac_secret.as_bytes())),
            topic: topic.map(Arc::from),
            expect_personal,
        })
    }

    /// Opens TCP from the next source address in turn.
    async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let sock = TcpSocket::new_v4()?;
        if !self.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            let local = SocketAddr::new(IpAddr::V4(self.sources[i]), 0);
            sock.bind(local).with_context(|| format!("bind {local}"))?;
        }
        let stream = sock
            .connect(self.dest)
            .await
            .with_context(|| format!("connect {}", self.dest))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens and prepares the connection of user `lt-<user>`.
    pub async fn open(&self, user: usize) -> anyhow::Result<Connection> {
        self.open_at(user, None).await
    }

    /// Opens and prepares the connection of user `lt-<user>`; with `resume` (Herald over
    /// WebSocket), the topic is subscribed with recovery from that stream position.
    pub async fn open_at(
        &self,
        user: usize,
        resume: Option<&Position>,
    ) -> anyhow::Result<Connection> {
        let tcp = self.tcp().await?;
        let seed = user as u32;
        let user = format!("lt-{user}");
        let mut s = match self.proto {
            Proto::Raw => Connection::new(Io::Ws(WsConn::raw(tcp, seed)), self.proto),
            Proto::HeraldSse => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                let path = self.sse_path(&herald::mint(key, &user)?);
                let conn = SseConn::connect(tcp, &self.host, &path).await?;
                Connection::new(Io::Sse(conn), self.proto)
            }
            Proto::Herald => {
                let conn = WsConn::connect(tcp, &self.host, &self.path, seed).await?;
                Connection::new(Io::Ws(conn), self.proto)
            }
            Proto::Socketio | Proto::Ws => {
                let sep = if self.path.contains('?') { '&' } else { '?' };
                let path = format!("{}{sep}user={user}", self.path);
                let conn = WsConn::connect(tcp, &self.host, &path, seed).await?;
                Connection::new(Io::Ws(conn), self.proto)
            }
        };
        let topic = self.topic.as_deref();
        match self.proto {
            Proto::Herald => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                let sub = herald::Subscribe { topic, resume };
                s.subscribed = herald::setup(&mut s, &user, key, sub, self.expect_personal).await?;
            }
            Proto::HeraldSse => {
                herald::setup_sse(&mut s, &user, self.topic.as_ref(), self.expect_personal).await?;
            }
            Proto::Socketio => socketio::setup(&mut s, topic).await?,
            Proto::Ws => ws::setup(&mut s, topic).await?,
            Proto::Raw => {}
        }
        Ok(s)
    }

    /// Path and query of an event stream request: the token, and the topic if any.
    fn sse_path(&self, token: &str) -> String {
        let mut query = format!("token={token}");
        if let Some(topic) = &self.topic {
            query.push_str("&channels=");
            query.push_str(&percent_encode(topic));
        }
        let sep = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", self.path)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (channel names may hold
/// `+`, `#`, `=` and `@`, which mean something else in a query).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Connection {
    fn new(io: Io, proto: Proto) -> Self {
        Connection {
            io,
            proto,
            pong: false,
            replayed: None,
            subscribed: None,
            pending: None,
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

    /// Next text message; WebSocket pings are answered, a close is an error.
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        loop {
            match self.io.next_message()? {
                Some(Msg::Text(t)) => return Ok(t.to_owned()),
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

/// Decodes one text message of `proto` into `out`; `replayed` is the connection's
/// [`Connection::replayed`].
pub fn decode(proto: Proto, replayed: Option<&Replayed>, text: &str, out: &mut Vec<Event>) {
    match proto {
        Proto::Herald | Proto::Raw => herald::decode(text, out),
        Proto::HeraldSse => herald::decode_sse(text, replayed, out),
        Proto::Socketio => socketio::decode(text, out),
        Proto::Ws => ws::decode(text, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_frames_may_batch_pushes_and_pings() {
        let mut out = Vec::new();
        let frame = "{\"push\":{\"channel\":\"stock:LOAD\",\"pub\":{\"data\":{\"seq\":7,\"ts\":99},\"offset\":8}}}\n{}\n{\"id\":3,\"subscribe\":{}}";
        decode(Proto::Herald, None, frame, &mut out);
        assert_eq!(
            out,
            vec![
                Event::Pub(Payload { seq: 7, ts: 99 }, Some(8)),
                Event::Reply("{}")
            ]
        );
    }

    #[test]
    fn socketio_events_and_pings() {
        let mut out = Vec::new();
        decode(Proto::Socketio, None, "2", &mut out);
        decode(
            Proto::Socketio,
            None,
            r#"42["publication",{"channel":"stock:LOAD","data":{"seq":1,"ts":5}}]"#,
            &mut out,
        );
        decode(Proto::Socketio, None, "41", &mut out);
        assert_eq!(out[0], Event::Reply("3"));
        assert_eq!(out[1], Event::Pub(Payload { seq: 1, ts: 5 }, None));
        assert!(matches!(out[2], Event::Closed(None, _)));
    }

    #[test]
    fn sse_queries_are_encoded() {
        assert_eq!(percent_encode("stock:A+B#1"), "stock%3AA%2BB%231");
        assert_eq!(percent_encode("lt-4_x.y~"), "lt-4_x.y~");
    }

    #[test]
    fn ws_peer_frames() {
        let mut out = Vec::new();
        decode(
            Proto::Ws,
            None,
            r#"{"channel":"user:lt-1","data":{"seq":2,"ts":3}}"#,
            &mut out,
        );
        decode(Proto::Ws, None, r#"{"subscribed":"x"}"#, &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 2, ts: 3 }, None)]);
    }
}
