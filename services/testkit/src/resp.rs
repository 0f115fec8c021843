//! A tiny RESP2 client for test set-up, fault injection (PING, CLUSTER INFO,
//! CLIENT KILL, DEBUG ...) and reading raw pub/sub messages. Not for the code
//! under test: that uses the engine.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status or a bulk string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A nil bulk string or array.
    Nil,
    /// An array.
    Array(Vec<Reply>),
    /// A `-ERR ...` error reply.
    Error(String),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// Sends one command to `addr` (`host:port`) on a fresh connection, with a 5 s deadline.
pub async fn command(addr: &str, args: &[&str]) -> anyhow::Result<Reply> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).await?;
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader).await
    })
    .await
    .with_context(|| format!("{addr}: {args:?} timed out"))?
}

/// A connection in subscriber mode on one pub/sub channel, reading the raw
/// messages published there.
pub struct Subscriber {
    reader: BufReader<TcpStream>,
}

impl Subscriber {
    /// `SUBSCRIBE`s `channel` on `addr`; ready once Redis confirmed it.
    pub async fn start(addr: &str, channel: &str) -> anyhow::Result<Subscriber> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let command = format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        stream.write_all(command.as_bytes()).await?;
        let mut subscriber = Subscriber {
            reader: BufReader::new(stream),
        };
        let confirmed = subscriber.next_reply().await?;
        match &confirmed {
            Reply::Array(items) if items.first().and_then(Reply::text) == Some("subscribe") => {
                Ok(subscriber)
            }
            other => bail!("SUBSCRIBE {channel}: {other:?}"),
        }
    }

    /// The payload of the next message (5 s at most).
    pub async fn next_message(&mut self) -> anyhow::Result<String> {
        match self.next_reply().await? {
            Reply::Array(items) if items.len() == 3 && items[0].text() == Some("message") => {
                Ok(items[2].text().unwrap_or_default().to_owned())
            }
            other => bail!("not a pub/sub message: {other:?}"),
        }
    }

    async fn next_reply(&mut self) -> anyhow::Result<Reply> {
        tokio::time::timeout(Duration::from_secs(5), read_reply(&mut self.reader))
            .await
            .context("no pub/sub message within 5s")?
    }
}

fn read_reply<'a>(
    r: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Reply::Text(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    return Ok(Reply::Nil);
                }
                let mut buf = vec![0; len as usize + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(len as usize);
                Reply::Text(String::from_utf8(buf)?)
            }
            "*" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    return Ok(Reply::Nil);
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(read_reply(r).await?);
                }
                Reply::Array(items)
            }
            _ => bail!("unexpected reply line {line:?}"),
        })
    })
}
