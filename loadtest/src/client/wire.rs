//! Minimal RFC 6455 client framing over a tokio `TcpStream`: the HTTP upgrade, masked text frames
//! out, unmasked frames in, pings answered with pongs, close handshake. Written for the receive
//! hot path: one reusable buffer, no zeroing, several frames decoded per read. No extensions.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::io;

use anyhow::{anyhow, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest message accepted from a server.
const MAX_MESSAGE: usize = 16 << 20;

/// Largest HTTP upgrade response accepted.
pub(super) const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// Bytes reserved before each read.
const READ_CHUNK: usize = 4096;

/// A complete message taken from the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A text message.
    Text(&'a str),
    /// A close frame: code (1005 when absent) and reason.
    Close(u16, String),
}

/// Client side of a WebSocket connection.
pub struct WsConn {
    stream: TcpStream,
    buf: BytesMut,
    /// Continuation frames of a fragmented message.
    partial: Vec<u8>,
    /// The last reassembled fragmented message (borrowed by `Msg::Text`).
    assembled: Vec<u8>,
    /// Bytes of `buf` holding the message last returned, dropped on the next call.
    consumed: usize,
    /// Control frames (pongs) to write before anything else.
    pending: Vec<u8>,
    mask: u32,
}

impl WsConn {
    /// Wraps a stream on which the handshake is already done (or skipped, for raw floor sockets).
    pub fn raw(stream: TcpStream, seed: u32) -> Self {
        WsConn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            partial: Vec::new(),
            assembled: Vec::new(),
            consumed: 0,
            pending: Vec::new(),
            mask: seed | 1,
        }
    }

    /// Performs the HTTP upgrade for `host` (with port) and `path` (with query).
    pub async fn connect(
        stream: TcpStream,
        host: &str,
        path: &str,
        seed: u32,
    ) -> anyhow::Result<Self> {
        let mut c = WsConn::raw(stream, seed);
        let key = BASE64.encode(nonce(seed));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        c.stream.write_all(request.as_bytes()).await?;
        let head_len = loop {
            if let Some(i) = find(&c.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if c.buf.len() > MAX_RESPONSE_HEAD {
                bail!("upgrade response too large");
            }
            if c.fill().await? == 0 {
                bail!("connection closed during the upgrade");
            }
        };
        let head = String::from_utf8_lossy(&c.buf[..head_len]).into_owned();
        c.buf.advance(head_len);
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {status}");
        }
        let accept = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-accept"))
            })
            .map(|(_, v)| v.trim().to_owned());
        if accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
            bail!("bad Sec-WebSocket-Accept in upgrade response");
        }
        Ok(c)
    }

    /// Reads whatever is available (waiting for readability); `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.buf.advance(std::mem::take(&mut self.consumed));
        self.buf.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Next complete message already in the buffer, without IO. Pings queue a pong (written
    /// by `flush`); pongs are skipped.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Msg<'_>>> {
        self.buf.advance(std::mem::take(&mut self.consumed));
        loop {
            let Some((fin, opcode, start, len)) = parse_header(&self.buf)? else {
                return Ok(None);
            };
            if self.buf.len() < start + len {
                self.buf.reserve(start + len - self.buf.len());
                return Ok(None);
            }
            if opcode == 0x1 && fin && self.partial.is_empty() {
                // The common case: hand out the bytes in place, drop them on the next call.
                self.consumed = start + len;
                return text(&self.buf[start..start + len]).map(Some);
            }
            self.buf.advance(start);
            let payload = self.buf.split_to(len);
            match opcode {
                0x0..=0x2 => {
                    if self.partial.len() + payload.len() > MAX_MESSAGE {
                        bail!("message larger than {MAX_MESSAGE} bytes");
                    }
                    self.partial.extend_from_slice(&payload);
                    if fin {
                        self.assembled = std::mem::take(&mut self.partial);
                        return text(&self.assembled).map(Some);
                    }
                }
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    return Ok(Some(Msg::Close(code, reason)));
                }
                0x9 => {
                    let pong = frame(0xA, &payload, self.next_mask());
                    self.pending.extend_from_slice(&pong);
                }
                0xA => {}
                op => bail!("unknown opcode {op:#x}"),
            }
        }
    }

    /// Writes queued control frames.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.stream.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.flush().await?;
        let f = frame(0x1, text.as_bytes(), self.next_mask());
        self.stream.write_all(&f).await
    }

    /// Sends a normal close frame.
    pub async fn send_close(&mut self) -> io::Result<()> {
        let f = frame(0x8, &1000u16.to_be_bytes(), self.next_mask());
        self.stream.write_all(&f).await
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret here, only present (RFC 6455 section 5.3).
        let mut x = self.mask;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask = x;
        x.to_le_bytes()
    }
}

fn text(bytes: &[u8]) -> anyhow::Result<Msg<'_>> {
    std::str::from_utf8(bytes)
        .map(Msg::Text)
        .map_err(|_| anyhow!("text message is not UTF-8"))
}

/// Header of the frame at the start of `buf`: (fin, opcode, header length, payload length).
fn parse_header(buf: &[u8]) -> anyhow::Result<Option<(bool, u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode, masked) = (buf[0] & 0x80 != 0, buf[0] & 0x0F, buf[1] & 0x80 != 0);
    let (start, len) = match buf[1] & 0x7F {
        126 if buf.len() < 4 => return Ok(None),
        126 => (4, u16::from_be_bytes([buf[2], buf[3]]) as u64),
        127 if buf.len() < 10 => return Ok(None),
        127 => (10, u64::from_be_bytes(buf[2..10].try_into()?)),
        n => (2, n as u64),
    };
    if masked {
        bail!("masked frame from server");
    }
    if len > MAX_MESSAGE as u64 {
        bail!("frame larger than {MAX_MESSAGE} bytes");
    }
    if buf[0] & 0x70 != 0 {
        bail!("reserved bits set without a negotiated extension");
    }
    Ok(Some((fin, opcode, start, len as usize)))
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
    fn headers_of_all_lengths() {
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
        assert_eq!(parse_header(&[0x81, 5]).unwrap(), Some((true, 1, 2, 5)));
        assert_eq!(
            parse_header(&[0x01, 126, 1, 0]).unwrap(),
            Some((false, 1, 4, 256))
        );
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(parse_header(&long).unwrap(), Some((true, 2, 10, 70_000)));
        assert!(
            parse_header(&[0x81, 0x85]).is_err(),
            "servers must not mask"
        );
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
