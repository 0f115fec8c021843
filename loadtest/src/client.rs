//! WebSocket clients of the targets: dialing from spread source addresses, the per-protocol
//! handshake (`client::herald`, `client::socketio`, `client::ws`) and decoding of incoming frames
//! into publications and ping answers. Delivery accounting is left to the caller.

mod herald;
mod socketio;
mod wire;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::EncodingKey;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::Target;

pub use wire::{Msg, WsConn};

/// Wire protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Centrifugo client protocol, JSON, `\n`-batched replies.
    Herald,
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
    /// A publication arrived.
    Pub(Payload),
    /// Text to send back (a pong).
    Reply(&'static str),
    /// The server ended the connection at the protocol level.
    Closed(String),
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
    topic: Option<String>,
    expect_personal: bool,
}

/// An established connection, subscribed and ready to receive.
pub struct Connection {
    /// The socket.
    pub ws: WsConn,
    /// Protocol spoken on it.
    pub proto: Proto,
    /// Whether server pings must be answered (Herald: connect result `pong`).
    pub pong: bool,
}

impl Dialer {
    /// Builds a dialer for `url` (resolved once). `topic` is subscribed after connecting;
    /// `expect_personal` checks the personal channel is part of the Herald connect reply.
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
        if proto == Proto::Herald && hmac_secret.is_empty() {
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
            topic,
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
        let tcp = self.tcp().await?;
        let seed = user as u32;
        let user = format!("lt-{user}");
        if self.proto == Proto::Raw {
            let conn = WsConn::raw(tcp, seed);
            return Ok(Connection {
                ws: conn,
                proto: Proto::Raw,
                pong: false,
            });
        }
        let path = match self.proto {
            Proto::Herald => self.path.clone(),
            _ => format!(
                "{}{}user={user}",
                self.path,
                if self.path.contains('?') { '&' } else { '?' }
            ),
        };
        let conn = WsConn::connect(tcp, &self.host, &path, seed).await?;
        let mut s = Connection {
            ws: conn,
            proto: self.proto,
            pong: false,
        };
        let topic = self.topic.as_deref();
        match self.proto {
            Proto::Herald => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                herald::setup(&mut s, &user, key, topic, self.expect_personal).await?;
            }
            Proto::Socketio => socketio::setup(&mut s, topic).await?,
            Proto::Ws => ws::setup(&mut s, topic).await?,
            Proto::Raw => {}
        }
        Ok(s)
    }
}

impl Connection {
    /// Sends one text message.
    pub async fn send(&mut self, text: impl AsRef<str>) -> anyhow::Result<()> {
        self.ws.send_text(text.as_ref()).await?;
        Ok(())
    }

    /// Next text message; WebSocket pings are answered, a close is an error.
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        loop {
            match self.ws.next_message()? {
                Some(Msg::Text(t)) => return Ok(t.to_owned()),
                Some(Msg::Close(code, reason)) => bail!("closed by server: code {code} {reason:?}"),
                None => {}
            }
            self.ws.flush().await?;
            if self.ws.fill().await? == 0 {
                bail!("connection closed by server");
            }
        }
    }

    /// Closes politely: close frame, then wait briefly for the server to close its side, so that
    /// TIME_WAIT stays on the server and off the load generator's ports.
    /// Raw floor sockets send nothing and only wait for the acceptor to close.
    pub async fn close(mut self) {
        if self.proto != Proto::Raw && self.ws.send_close().await.is_err() {
            return;
        }
        let drain = async {
            while let Ok(n) = self.ws.fill().await {
                if n == 0 {
                    break;
                }
                while let Ok(Some(_)) = self.ws.next_message() {}
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}

/// Decodes one text frame of `proto` into `out`.
pub fn decode(proto: Proto, text: &str, out: &mut Vec<Event>) {
    match proto {
        Proto::Herald | Proto::Raw => herald::decode(text, out),
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
        decode(Proto::Herald, frame, &mut out);
        assert_eq!(
            out,
            vec![Event::Pub(Payload { seq: 7, ts: 99 }), Event::Reply("{}")]
        );
    }

    #[test]
    fn socketio_events_and_pings() {
        let mut out = Vec::new();
        decode(Proto::Socketio, "2", &mut out);
        decode(
            Proto::Socketio,
            r#"42["publication",{"channel":"stock:LOAD","data":{"seq":1,"ts":5}}]"#,
            &mut out,
        );
        decode(Proto::Socketio, "41", &mut out);
        assert_eq!(out[0], Event::Reply("3"));
        assert_eq!(out[1], Event::Pub(Payload { seq: 1, ts: 5 }));
        assert!(matches!(out[2], Event::Closed(_)));
    }

    #[test]
    fn ws_peer_frames() {
        let mut out = Vec::new();
        decode(
            Proto::Ws,
            r#"{"channel":"user:lt-1","data":{"seq":2,"ts":3}}"#,
            &mut out,
        );
        decode(Proto::Ws, r#"{"subscribed":"x"}"#, &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 2, ts: 3 })]);
    }
}
