//! Dialing a connection of the run: the target's address resolved once, source addresses taken
//! in turn, the transport's handshake and then the protocol's (connect, subscribe). What a
//! connection does once open is `client`'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::EncodingKey;
use tokio::net::{TcpSocket, TcpStream};

use super::conn::{Connection, Io, Position, Proto};
use super::herald;
use super::socketio;
use super::sse::SseConn;
use super::wire::WsConn;
use super::ws;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_queries_are_encoded() {
        assert_eq!(percent_encode("stock:A+B#1"), "stock%3AA%2BB%231");
        assert_eq!(percent_encode("lt-4_x.y~"), "lt-4_x.y~");
    }
}
