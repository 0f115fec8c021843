//! Minimal Server-Sent Events client over a tokio `TcpStream`: one HTTP/1.1 `GET`, the response
//! head, a chunked (or close-delimited) body and the `text/event-stream` framing. Hands out the
//! `data` of each event; comments (`: ping`) and events without data are skipped. No reconnect:
//! the load generator counts a dropped stream as a disconnect. Like `wire`, one reusable receive
//! buffer and several events decoded per read.

use std::io;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{find, Msg, MAX_RESPONSE_HEAD};

/// Bytes reserved before each read.
const READ_CHUNK: usize = 4096;

/// Largest event (or unterminated line) accepted from a server.
const MAX_EVENT: usize = 1 << 20;

/// Longest chunk-size line of the chunked transfer coding.
const MAX_CHUNK_LINE: usize = 1024;

/// Error body quoted when the server refuses the stream.
const QUOTED_BODY: usize = 200;

/// Framing of the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Transfer-Encoding: chunked`, in the given state.
    Chunked(Chunk),
    /// No framing: the body ends when the connection does.
    UntilClose,
    /// The last chunk was received.
    Ended,
}

/// Position inside the chunked transfer coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// Expecting the CRLF that ends chunk data.
    DataEnd,
}

/// Client side of an event stream.
pub struct SseConn {
    stream: TcpStream,
    /// Bytes read from the socket and not yet taken out of the transfer coding.
    raw: BytesMut,
    /// Event stream text not yet parsed into events.
    text: BytesMut,
    body: Body,
    /// Bytes of `text` holding the event last returned, dropped on the next call.
    consumed: usize,
    /// Data of the last event that had several `data:` lines (borrowed by `Msg::Text`).
    assembled: String,
}

impl SseConn {
    /// Sends `GET path` (with query) to `host` (with port) and reads the response head; a
    /// status other than 200 is an error quoting the start of the body.
    pub async fn connect(mut stream: TcpStream, host: &str, path: &str) -> anyhow::Result<Self> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut c = SseConn {
            stream,
            raw: BytesMut::with_capacity(READ_CHUNK),
            text: BytesMut::new(),
            body: Body::UntilClose,
            consumed: 0,
            assembled: String::new(),
        };
        let head_len = loop {
            if let Some(i) = find(&c.raw, b"\r\n\r\n") {
                break i + 4;
            }
            if c.raw.len() > MAX_RESPONSE_HEAD {
                bail!("response head too large");
            }
            if c.read().await? == 0 {
                bail!("connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&c.raw[..head_len]).into_owned();
        c.raw.advance(head_len);
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            let body = String::from_utf8_lossy(&c.raw[..c.raw.len().min(QUOTED_BODY)]);
            bail!("event stream refused: {status}: {}", body.trim());
        }
        let chunked = head.lines().skip(1).any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            })
        });
        if chunked {
            c.body = Body::Chunked(Chunk::Size);
        }
        Ok(c)
    }

    async fn read(&mut self) -> io::Result<usize> {
        self.raw.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.raw).await
    }

    /// Reads whatever is available (waiting for readability); `Ok(0)` at the end of the stream
    /// (connection closed, or the last chunk received).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.body == Body::Ended {
            return Ok(0);
        }
        self.read().await
    }

    /// Data of the next complete event already received, without IO.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Msg<'_>>> {
        self.text.advance(std::mem::take(&mut self.consumed));
        self.decode_body()?;
        loop {
            let Some((block, next)) = event_end(&self.text) else {
                if self.text.len() > MAX_EVENT {
                    bail!("event larger than {MAX_EVENT} bytes");
                }
                return Ok(None);
            };
            let mut data = None;
            let mut lines = 0;
            for (start, end) in lines_of(&self.text[..block]) {
                let line = &self.text[start..end];
                let (field, value_at) = match line.iter().position(|&b| b == b':') {
                    Some(0) => continue, // a comment
                    Some(i) if line.get(i + 1) == Some(&b' ') => (&line[..i], i + 2),
                    Some(i) => (&line[..i], i + 1),
                    None => (line, line.len()),
                };
                if field != b"data" {
                    continue;
                }
                let value = (start + value_at, end);
                lines += 1;
                if lines == 1 {
                    data = Some(value);
                    continue;
                }
                if lines == 2 {
                    self.assembled.clear();
                    let (s, e) = data.unwrap_or(value);
                    self.assembled.push_str(utf8(&self.text[s..e])?);
                }
                self.assembled.push('\n');
                self.assembled.push_str(utf8(&self.text[value.0..value.1])?);
            }
            match (lines, data) {
                (0, _) | (_, None) => self.text.advance(next),
                (1, Some((s, e))) => {
                    // The common case: hand out the bytes in place, drop them on the next call.
                    self.consumed = next;
                    return utf8(&self.text[s..e]).map(|t| Some(Msg::Text(t)));
                }
                _ => {
                    self.text.advance(next);
                    return Ok(Some(Msg::Text(&self.assembled)));
                }
            }
        }
    }

    /// Moves body bytes from `raw` to `text`, taking off the chunked transfer coding.
    fn decode_body(&mut self) -> anyhow::Result<()> {
        loop {
            let chunk = match self.body {
                Body::Ended => {
                    self.raw.clear();
                    return Ok(());
                }
                Body::UntilClose => {
                    self.text.extend_from_slice(&self.raw);
                    self.raw.clear();
                    return Ok(());
                }
                Body::Chunked(chunk) => chunk,
            };
            self.body = match chunk {
                Chunk::Size => {
                    let Some(i) = find(&self.raw, b"\r\n") else {
                        if self.raw.len() > MAX_CHUNK_LINE {
                            bail!("chunk-size line too long");
                        }
                        return Ok(());
                    };
                    let line = utf8(&self.raw[..i])?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .with_context(|| format!("bad chunk size {line:?}"))?;
                    self.raw.advance(i + 2);
                    match size {
                        // Trailers, if any, are never looked at: the stream is over.
                        0 => Body::Ended,
                        n => Body::Chunked(Chunk::Data(n)),
                    }
                }
                Chunk::Data(left) => {
                    if self.raw.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(self.raw.len());
                    self.text.extend_from_slice(&self.raw[..n]);
                    self.raw.advance(n);
                    Body::Chunked(if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    })
                }
                Chunk::DataEnd => {
                    if self.raw.len() < 2 {
                        return Ok(());
                    }
                    if &self.raw[..2] != b"\r\n" {
                        bail!("chunk data not followed by CRLF");
                    }
                    self.raw.advance(2);
                    Body::Chunked(Chunk::Size)
                }
            };
        }
    }
}

fn utf8(bytes: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(bytes).context("event stream is not UTF-8")
}

/// End of the first event in `buf`: (length of its lines, offset after the blank line that
/// ends it). Lines end with LF or CRLF.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + i;
        if matches!(&buf[start..end], b"" | b"\r") {
            return Some((start, end + 1));
        }
        start = end + 1;
    }
    None
}

/// (start, end) of each line of a block, without its LF or CRLF.
fn lines_of(block: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= block.len() {
            return None;
        }
        let len = block[start..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(block.len() - start);
        let (s, mut e) = (start, start + len);
        start = e + 1;
        if e > s && block[e - 1] == b'\r' {
            e -= 1;
        }
        Some((s, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connection whose server writes `response` and then closes.
    async fn served(response: &'static [u8]) -> anyhow::Result<SseConn> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut head = Vec::new();
            while find(&head, b"\r\n\r\n").is_none() {
                if s.read_buf(&mut head).await? == 0 {
                    break;
                }
            }
            assert!(head.starts_with(b"GET /connection/sse?token=t HTTP/1.1\r\n"));
            s.write_all(response).await?;
            io::Result::Ok(())
        });
        let stream = TcpStream::connect(addr).await?;
        let c = SseConn::connect(stream, "h:1", "/connection/sse?token=t").await;
        server.await??;
        c
    }

    async fn all_events(c: &mut SseConn) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            while let Some(m) = c.next_message()? {
                if let Msg::Text(t) = m {
                    out.push(t.to_owned());
                }
            }
            if c.fill().await? == 0 {
                return Ok(out);
            }
        }
    }

    #[tokio::test]
    async fn chunked_events_across_chunk_boundaries() {
        let mut c = served(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
              12\r\ndata: {\"a\":1}\n\n: p\r\n\
              16\r\ning\n\nid: 7\r\ndata: {\"b\"\r\n\
              5;x=y\r\n:2}\n\n\r\n\
              0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(
            all_events(&mut c).await.unwrap(),
            ["{\"a\":1}", "{\"b\":2}"]
        );
    }

    #[tokio::test]
    async fn unframed_body_multiline_data_and_crlf() {
        let mut c = served(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
              data: one\r\ndata:two\r\n\r\nevent: x\n\ndata: three\n\ndata: partial",
        )
        .await
        .unwrap();
        assert_eq!(
            all_events(&mut c).await.unwrap(),
            ["one\ntwo", "three"],
            "an event without its blank line is not complete"
        );
    }

    #[tokio::test]
    async fn refusals_quote_status_and_body() {
        let e = served(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 36\r\n\r\n{\"error\":{\"code\":109,\"message\":\"x\"}}",
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("401 Unauthorized") && e.contains("109"), "{e}");
    }

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(event_end(b"data: x\n\nrest"), Some((8, 9)));
        assert_eq!(event_end(b"data: x\r\n\r\n"), Some((9, 11)));
        assert_eq!(event_end(b"\n"), Some((0, 1)));
        assert_eq!(event_end(b"data: x\n"), None);
        let block = b"a\r\nbc\n";
        let lines: Vec<_> = lines_of(block).collect();
        assert_eq!(lines, [(0, 1), (3, 5)]);
    }
}
