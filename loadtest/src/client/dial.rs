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

/// Which topic a connection subscribes after connecting.
#[derive(Debug, Clone, Default)]
pub enum Topic {
    /// None.
    #[default]
    None,
    /// The same channel for every connection.
    One(Arc<str>),
    /// `fleet`: user `lt-<user_offset + i>` holds `stock:<first + i % count>`.
    Spread {
        /// Number of the first topic.
        first: u64,
        /// Topics.
        count: u64,
        /// Number of the first user.
        user_offset: usize,
    },
}

impl Topic {
    fn for_user(&self, user: usize) -> Option<Arc<str>> {
        match self {
            Topic::None => None,
            Topic::One(t) => Some(t.clone()),
            Topic::Spread {
                first,
                count,
                user_offset,
            } => {
                let i = user.saturating_sub(*user_offset) as u64;
                Some(Arc::from(crate::publish::topic_channel(first + i % count)))
            }
        }
    }
}

/// One server node connections may go to.
struct Node {
    dest: SocketAddr,
    host: String,
    path: String,
}

impl Node {
    async fn resolve(url: &str) -> anyhow::Result<Node> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("no host in {url:?}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let dest = tokio::net::lookup_host((host, port))
            .await?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{host} has no IPv4 address"))?;
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        Ok(Node {
            dest,
            host: format!("{host}:{port}"),
            path,
        })
    }
}

/// Everything needed to open a connection of the run.
pub struct Dialer {
    /// Protocol to speak.
    pub proto: Proto,
    nodes: Vec<Node>,
    sources: Vec<Ipv4Addr>,
    next_source: AtomicUsize,
    key: Option<EncodingKey>,
    topic: Topic,
    expect_personal: bool,
}

impl Dialer {
    /// Builds a dialer for `urls` (comma-separated, each resolved once; WebSocket URLs, or the
    /// event stream URL for `Proto::HeraldSse`). `topic` is subscribed after connecting;
    /// `expect_personal` checks the personal channel is part of the Herald connect reply.
    pub async fn new(
        proto: Proto,
        urls: &str,
        sources: Vec<Ipv4Addr>,
        hmac_secret: &str,
        topic: Topic,
        expect_personal: bool,
    ) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            nodes.push(Node::resolve(url).await?);
        }
        if nodes.is_empty() {
            bail!("no URL in {urls:?}");
        }
        if nodes.len() > 1 && !matches!(proto, Proto::Herald | Proto::HeraldProtobuf) {
            bail!("several URLs need the Herald target over WebSocket");
        }
        let herald = [Proto::Herald, Proto::HeraldProtobuf, Proto::HeraldSse];
        if herald.contains(&proto) && hmac_secret.is_empty() {
            bail!("--hmac-secret is required for the herald target");
        }
        Ok(Dialer {
            proto,
            nodes,
            sources,
            next_source: AtomicUsize::new(0),
            key: (!hmac_secret.is_empty())
                .then(|| EncodingKey::from_secret(hmac_secret.as_bytes())),
            topic,
            expect_personal,
        })
    }

    /// The node user `lt-<user>` first connects to.
    pub fn home(&self, user: usize) -> usize {
        user % self.nodes.len()
    }

    /// A node other than `lost`, at random (`lost` itself if it is the only one).
    pub fn other_than(&self, lost: usize) -> usize {
        let n = self.nodes.len();
        if n < 2 {
            return 0;
        }
        (lost + 1 + rand::random_range(0..n - 1)) % n
    }

    /// Opens TCP to `dest` from the next source address in turn.
    async fn tcp(&self, dest: SocketAddr) -> anyhow::Result<TcpStream> {
        let sock = TcpSocket::new_v4()?;
        if !self.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            let local = SocketAddr::new(IpAddr::V4(self.sources[i]), 0);
            sock.bind(local).with_context(|| format!("bind {local}"))?;
        }
        let stream = sock
            .connect(dest)
            .await
            .with_context(|| format!("connect {dest}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens and prepares the connection of user `lt-<user>` at its home node.
    pub async fn open(&self, user: usize) -> anyhow::Result<Connection> {
        self.open_at(user, None, self.home(user)).await
    }

    /// Opens and prepares the connection of user `lt-<user>` at node `via`; with `resume`
    /// (Herald over WebSocket, either format), the topic is subscribed with recovery from that
    /// stream position.
    pub async fn open_at(
        &self,
        user: usize,
        resume: Option<&Position>,
        via: usize,
    ) -> anyhow::Result<Connection> {
        let node = &self.nodes[via % self.nodes.len()];
        let tcp = self.tcp(node.dest).await?;
        let seed = user as u32;
        let topic_name = self.topic.for_user(user);
        let topic = topic_name.as_deref();
        let user = format!("lt-{user}");
        let mut s = match self.proto {
            Proto::Raw => Connection::new(Io::Ws(WsConn::raw(tcp, seed)), self.proto),
            Proto::HeraldSse => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                let path = self.sse_path(&node.path, &herald::mint(key, &user)?, topic);
                let conn = SseConn::connect(tcp, &node.host, &path).await?;
                Connection::new(Io::Sse(conn), self.proto)
            }
            Proto::Herald | Proto::HeraldProtobuf => {
                let subprotocol =
                    (self.proto == Proto::HeraldProtobuf).then_some(herald::protobuf::SUBPROTOCOL);
                let conn = WsConn::connect(tcp, &node.host, &node.path, subprotocol, seed).await?;
                Connection::new(Io::Ws(conn), self.proto)
            }
            Proto::Socketio | Proto::Ws => {
                let sep = if node.path.contains('?') { '&' } else { '?' };
                let path = format!("{}{sep}user={user}", node.path);
                let conn = WsConn::connect(tcp, &node.host, &path, None, seed).await?;
                Connection::new(Io::Ws(conn), self.proto)
            }
        };
        s.via = via;
        match self.proto {
            Proto::Herald => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                let sub = herald::Subscribe { topic, resume };
                s.subscribed = herald::setup(&mut s, &user, key, sub, self.expect_personal).await?;
            }
            Proto::HeraldProtobuf => {
                let key = self.key.as_ref().ok_or_else(|| anyhow!("no hmac secret"))?;
                let sub = herald::Subscribe { topic, resume };
                let expect = self.expect_personal;
                s.subscribed = herald::protobuf::setup(&mut s, &user, key, sub, expect).await?;
            }
            Proto::HeraldSse => {
                herald::setup_sse(&mut s, &user, topic_name.as_ref(), self.expect_personal).await?;
            }
            Proto::Socketio => socketio::setup(&mut s, topic).await?,
            Proto::Ws => ws::setup(&mut s, topic).await?,
            Proto::Raw => {}
        }
        Ok(s)
    }

    /// Path and query of an event stream request: the token, and the topic if any.
    fn sse_path(&self, path: &str, token: &str, topic: Option<&str>) -> String {
        let mut query = format!("token={token}");
        if let Some(topic) = topic {
            query.push_str("&channels=");
            query.push_str(&percent_encode(topic));
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{query}")
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
