//! Minimal RFC 6455 client framing over a tokio `TcpStream`: the HTTP upgrade (with a
//! subprotocol when asked), masked text and binary frames out, close handshake. The receive side
//! (`client::wire::inbox`) is written for the hot path: one reusable buffer, no zeroing, several
//! frames decoded per read. No extensions.

mod inbox;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::io;

use anyhow::bail;
use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use self::inbox::Inbox;
pub use self::inbox::Msg;

/// Largest HTTP upgrade response accepted.
pub(super) const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// Client side of a WebSocket connection.
pub struct WsConn {
    stream: TcpStream,
    inbox: Inbox,
    masks: Masks,
}

impl WsConn {
    /// Wraps a stream on which the handshake is already done (or skipped, for raw floor sockets).
    pub fn raw(stream: TcpStream, seed: u32) -> Self {
        WsConn {
            stream,
            inbox: Inbox::new(),
            masks: Masks::new(seed),
        }
    }

    /// Performs the HTTP upgrade for `host` (with port) and `path` (with query), offering
    /// `subprotocol` if given; the server must then echo it.
    pub async fn connect(
        stream: TcpStream,
        host: &str,
        path: &str,
        subprotocol: Option<&str>,
        seed: u32,
    ) -> anyhow::Result<Self> {
        let mut c = WsConn::raw(stream, seed);
        let key = BASE64.encode(nonce(seed));
        let offer = subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        c.stream.write_all(request.as_bytes()).await?;
        let head_len = loop {
            if let Some(i) = find(&c.inbox.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if c.inbox.buf.len() > MAX_RESPONSE_HEAD {
                bail!("upgrade response too large");
            }
            if c.fill().await? == 0 {
                bail!("connection closed during the upgrade");
            }
        };
        let head = String::from_utf8_lossy(&c.inbox.buf[..head_len]).into_owned();
        c.inbox.buf.advance(head_len);
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {status}");
        }
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_owned())
        };
        if header("sec-websocket-accept").as_deref()
            != Some(derive_accept_key(key.as_bytes()).as_str())
        {
            bail!("bad Sec-WebSocket-Accept in upgrade response");
        }
        let echoed = header("sec-websocket-protocol");
        if echoed.as_deref() != subprotocol {
            bail!("subprotocol {subprotocol:?} offered, {echoed:?} in the upgrade response");
        }
        Ok(c)
    }

    /// Reads whatever is available (waiting for readability); `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.stream.read_buf(self.inbox.for_read()).await
    }

    /// Next complete message already in the buffer, without IO. Pings queue a pong (written
    /// by `flush`); pongs are skipped.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Msg<'_>>> {
        self.inbox.next_message(&mut self.masks)
    }

    /// Writes queued control frames.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.inbox.pongs.is_empty() {
            self.stream.write_all(&self.inbox.pongs).await?;
            self.inbox.pongs.clear();
        }
        Ok(())
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(0x1, text.as_bytes()).await
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(0x2, data).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.flush().await?;
        let f = frame(opcode, payload, self.masks.next());
        self.stream.write_all(&f).await
    }

    /// Sends a normal close frame.
    pub async fn send_close(&mut self) -> io::Result<()> {
        let f = frame(0x8, &1000u16.to_be_bytes(), self.masks.next());
        self.stream.write_all(&f).await
    }
}

/// Masking keys of one connection's frames: they need not be secret here, only present
/// (RFC 6455 section 5.3), so a xorshift32 sequence does.
pub struct Masks(u32);

impl Masks {
    /// A sequence seeded with `seed`.
    pub fn new(seed: u32) -> Self {
        Masks(seed | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x.to_le_bytes()
    }
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn nonce(seed: u32) -> [u8; 16] {
    let mut n = [0u8; 16];
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    for chunk in n.chunks_mut(4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_16_bytes_in_base64() {
        assert_eq!(BASE64.encode(nonce(7)).len(), 24);
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        let f = frame(0x1, b"hey", mask);
        assert_eq!(&f[..2], &[0x81, 0x83]);
        assert_eq!(&f[2..6], &mask);
        let unmasked: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"hey");
    }
}
