//! The receive side of the WebSocket client: one reusable buffer, frame headers, text and binary
//! messages handed out in place, reassembly of fragmented messages, pongs queued for pings. No
//! IO: the socket fills [`Inbox::buf`] and writes [`Inbox::pongs`].

use anyhow::{anyhow, bail};
use bytes::{Buf, BytesMut};

use super::{frame, Masks};

/// Largest message accepted from a server.
const MAX_MESSAGE: usize = 16 << 20;

/// Bytes reserved before each read.
const READ_CHUNK: usize = 4096;

/// A complete message taken from the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A close frame: code (1005 when absent) and reason.
    Close(u16, String),
}

/// Received bytes not yet taken as messages.
pub struct Inbox {
    /// What the socket read; the head may still hold the message last returned.
    pub buf: BytesMut,
    /// Continuation frames of a fragmented message, and the opcode of its first frame.
    partial: Vec<u8>,
    partial_opcode: u8,
    /// The last reassembled fragmented message (borrowed by the `Msg` returned).
    assembled: Vec<u8>,
    /// Bytes of `buf` holding the message last returned, dropped on the next call.
    consumed: usize,
    /// Control frames (pongs) to write before anything else.
    pub pongs: Vec<u8>,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Inbox {
            buf: BytesMut::with_capacity(READ_CHUNK),
            partial: Vec::new(),
            partial_opcode: 0,
            assembled: Vec::new(),
            consumed: 0,
            pongs: Vec::new(),
        }
    }

    /// The buffer to read into: the message last returned dropped, room for one more read.
    pub fn for_read(&mut self) -> &mut BytesMut {
        self.buf.advance(std::mem::take(&mut self.consumed));
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Next complete message already in the buffer. Pings queue a pong masked with the next of
    /// `masks`; pongs are skipped.
    pub fn next_message(&mut self, masks: &mut Masks) -> anyhow::Result<Option<Msg<'_>>> {
        self.buf.advance(std::mem::take(&mut self.consumed));
        loop {
            let Some((fin, opcode, start, len)) = parse_header(&self.buf)? else {
                return Ok(None);
            };
            if self.buf.len() < start + len {
                self.buf.reserve(start + len - self.buf.len());
                return Ok(None);
            }
            if matches!(opcode, 0x1 | 0x2) && fin && self.partial.is_empty() {
                // The common case: hand out the bytes in place, drop them on the next call.
                self.consumed = start + len;
                return data(opcode, &self.buf[start..start + len]).map(Some);
            }
            self.buf.advance(start);
            let payload = self.buf.split_to(len);
            match opcode {
                0x0..=0x2 => {
                    if self.partial.len() + payload.len() > MAX_MESSAGE {
                        bail!("message larger than {MAX_MESSAGE} bytes");
                    }
                    if opcode != 0x0 {
                        self.partial_opcode = opcode;
                    }
                    self.partial.extend_from_slice(&payload);
                    if fin {
                        self.assembled = std::mem::take(&mut self.partial);
                        return data(self.partial_opcode, &self.assembled).map(Some);
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
                    let pong = frame(0xA, &payload, masks.next());
                    self.pongs.extend_from_slice(&pong);
                }
                0xA => {}
                op => bail!("unknown opcode {op:#x}"),
            }
        }
    }
}

fn data(opcode: u8, bytes: &[u8]) -> anyhow::Result<Msg<'_>> {
    match opcode {
        0x2 => Ok(Msg::Binary(bytes)),
        _ => std::str::from_utf8(bytes)
            .map(Msg::Text)
            .map_err(|_| anyhow!("text message is not UTF-8")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first, payload.len() as u8];
        f.extend_from_slice(payload);
        f
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
    fn text_and_binary_messages_come_out_of_one_read_in_order() {
        let (mut inbox, mut masks) = (Inbox::new(), Masks::new(1));
        inbox.buf.extend_from_slice(&server_frame(0x81, b"{}"));
        inbox
            .buf
            .extend_from_slice(&server_frame(0x82, &[0, 3, 8, 1]));
        inbox.buf.extend_from_slice(&server_frame(0x89, b"p"));
        inbox
            .buf
            .extend_from_slice(&server_frame(0x88, &[0x03, 0xE9, b'x']));
        assert_eq!(
            inbox.next_message(&mut masks).unwrap(),
            Some(Msg::Text("{}"))
        );
        assert_eq!(
            inbox.next_message(&mut masks).unwrap(),
            Some(Msg::Binary(&[0, 3, 8, 1]))
        );
        assert_eq!(
            inbox.next_message(&mut masks).unwrap(),
            Some(Msg::Close(1001, "x".into()))
        );
        assert_eq!(inbox.pongs[0], 0x8A, "the ping queued a pong");
        assert_eq!(inbox.next_message(&mut masks).unwrap(), None);
    }

    #[test]
    fn a_binary_message_split_across_reads_and_frames_is_reassembled() {
        let (mut inbox, mut masks) = (Inbox::new(), Masks::new(1));
        let whole = server_frame(0x82, &[4, 1, 2, 3, 4]);
        inbox.buf.extend_from_slice(&whole[..3]);
        assert_eq!(inbox.next_message(&mut masks).unwrap(), None);
        inbox.for_read().extend_from_slice(&whole[3..]);
        assert_eq!(
            inbox.next_message(&mut masks).unwrap(),
            Some(Msg::Binary(&[4, 1, 2, 3, 4]))
        );
        // The same message in two frames: binary without FIN, then a continuation with FIN.
        inbox
            .for_read()
            .extend_from_slice(&server_frame(0x02, &[4, 1]));
        assert_eq!(inbox.next_message(&mut masks).unwrap(), None);
        inbox
            .for_read()
            .extend_from_slice(&server_frame(0x80, &[2, 3, 4]));
        assert_eq!(
            inbox.next_message(&mut masks).unwrap(),
            Some(Msg::Binary(&[4, 1, 2, 3, 4]))
        );
        inbox.buf.extend_from_slice(&server_frame(0x81, &[0xFF]));
        assert!(
            inbox.next_message(&mut masks).is_err(),
            "text must be UTF-8"
        );
    }
}
