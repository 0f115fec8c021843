//! Server-side WebSocket framing without I/O and without buffers of its own
//! while idle: [`Decoder`] turns the bytes of one read into client messages
//! (masked frames, fragmentation, control frames, size limits) and keeps only
//! an unfinished frame or message between reads; [`header`] formats the header
//! of an unmasked server frame so payloads can be written with `writev`
//! straight from the shared frames. Header parsing is tungstenite's.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message (Protobuf commands).
    Binary(Vec<u8>),
    /// A ping; the payload goes back in the pong.
    Ping(Vec<u8>),
    /// The client closes, with its close code if it sent one.
    Close(Option<u16>),
}

/// A complete message, as [`Decoder::decode_message`] returns it (the test
/// echo endpoint sends each back).
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping; the payload goes back in the pong.
    Ping(Vec<u8>),
    /// The client closes, with its close code if it sent one.
    Close(Option<u16>),
}

impl From<Message> for Incoming {
    fn from(message: Message) -> Incoming {
        match message {
            Message::Text(text) => Incoming::Text(text),
            Message::Binary(payload) => Incoming::Binary(payload),
            Message::Ping(payload) => Incoming::Ping(payload),
            Message::Close(code) => Incoming::Close(code),
        }
    }
}

/// Why the client's bytes cannot be read further.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A frame or message over the size limit.
    #[error("message too big")]
    TooBig,
    /// A text message that is not UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// Anything else RFC 6455 forbids (unmasked or reserved frames, bad fragmentation).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// Decoder state of one connection.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of a frame not yet complete (empty, unallocated, between whole frames).
    partial: Vec<u8>,
    /// Payload of a fragmented message so far, and whether it is text.
    fragments: Option<(Vec<u8>, bool)>,
}

/// Result of decoding from a byte slice.
type Decoded = Result<(usize, Option<Message>), DecodeError>;

impl Decoder {
    /// A decoder that starts with bytes read before the WebSocket began
    /// (they come out of calls with an empty input first).
    pub fn with_pending(input: &[u8]) -> Decoder {
        Decoder {
            partial: input.to_vec(),
            fragments: None,
        }
    }

    /// Whether bytes of an unfinished frame are kept from an earlier read.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Decodes the next message from what is buffered plus `input` (the bytes of
    /// one read, or empty to continue with what is buffered). Every byte of
    /// `input` is consumed: what follows the returned message is buffered and
    /// comes out of later calls with an empty `input`.
    pub fn decode(&mut self, input: &[u8], limit: usize) -> Result<Option<Incoming>, DecodeError> {
        Ok(self.decode_message(input, limit)?.map(Incoming::from))
    }

    /// [`Decoder::decode`], keeping a binary message's payload.
    pub fn decode_message(
        &mut self,
        input: &[u8],
        limit: usize,
    ) -> Result<Option<Message>, DecodeError> {
        if self.partial.is_empty() {
            let (used, message) = self.decode_frames(input, limit)?;
            self.partial.extend_from_slice(&input[used..]);
            return Ok(message);
        }
        self.partial.extend_from_slice(input);
        let buffered = std::mem::take(&mut self.partial);
        let (used, message) = self.decode_frames(&buffered, limit)?;
        if used < buffered.len() {
            self.partial = buffered;
            self.partial.drain(..used);
        }
        Ok(message)
    }

    /// Decodes whole frames from `bytes` until a message is complete or a frame
    /// is cut off; returns the bytes used.
    fn decode_frames(&mut self, bytes: &[u8], limit: usize) -> Decoded {
        let mut used = 0;
        while used < bytes.len() {
            let (frame_len, message) = self.decode_frame(&bytes[used..], limit)?;
            if frame_len == 0 {
                break;
            }
            used += frame_len;
            if message.is_some() {
                return Ok((used, message));
            }
        }
        Ok((used, None))
    }

    /// Decodes one frame; `(0, None)` when `bytes` holds only part of it.
    fn decode_frame(&mut self, bytes: &[u8], limit: usize) -> Decoded {
        let mut cursor = Cursor::new(bytes);
        let Some((header, length)) = FrameHeader::parse(&mut cursor)
            .map_err(|_| DecodeError::Protocol("bad frame header"))?
        else {
            return Ok((0, None));
        };
        let Some(mask) = header.mask else {
            return Err(DecodeError::Protocol("unmasked client frame"));
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(DecodeError::Protocol("reserved bits set"));
        }
        // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
        if length > i64::MAX as u64 {
            return Err(DecodeError::Protocol("payload length with its top bit set"));
        }
        let length = usize::try_from(length).map_err(|_| DecodeError::TooBig)?;
        let buffered = self.fragments.as_ref().map_or(0, |(f, _)| f.len());
        if length > limit.saturating_sub(buffered) {
            return Err(DecodeError::TooBig);
        }
        let start = usize::try_from(cursor.position()).expect("header length");
        let Some(masked) = bytes.get(start..start + length) else {
            return Ok((0, None));
        };
        let mut payload = masked.to_vec();
        unmask(&mut payload, mask);
        let message = self.on_frame(header.opcode, header.is_final, payload)?;
        Ok((start + length, message))
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: Vec<u8>,
    ) -> Result<Option<Message>, DecodeError> {
        match opcode {
            OpCode::Control(control) => {
                if !fin || payload.len() > 125 {
                    return Err(DecodeError::Protocol("fragmented or long control frame"));
                }
                Ok(match control {
                    Control::Ping => Some(Message::Ping(payload)),
                    Control::Pong => None,
                    Control::Close => Some(Message::Close(close_code(&payload)?)),
                    Control::Reserved(_) => return Err(DecodeError::Protocol("reserved opcode")),
                })
            }
            OpCode::Data(Data::Text | Data::Binary) if self.fragments.is_some() => {
                Err(DecodeError::Protocol("new message inside a fragmented one"))
            }
            OpCode::Data(data @ (Data::Text | Data::Binary)) => {
                let text = data == Data::Text;
                if fin {
                    return message(payload, text).map(Some);
                }
                if text {
                    check_utf8_so_far(&payload, payload.len())?;
                }
                self.fragments = Some((payload, text));
                Ok(None)
            }
            OpCode::Data(Data::Continue) => {
                let Some((mut whole, text)) = self.fragments.take() else {
                    return Err(DecodeError::Protocol("continuation without a message"));
                };
                whole.extend_from_slice(&payload);
                if fin {
                    return message(whole, text).map(Some);
                }
                if text {
                    check_utf8_so_far(&whole, payload.len())?;
                }
                self.fragments = Some((whole, text));
                Ok(None)
            }
            OpCode::Data(Data::Reserved(_)) => Err(DecodeError::Protocol("reserved opcode")),
        }
    }
}

fn message(payload: Vec<u8>, text: bool) -> Result<Message, DecodeError> {
    if !text {
        return Ok(Message::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Message::Text)
        .map_err(|_| DecodeError::InvalidUtf8)
}

/// Fails a fragmented text message as soon as it can no longer be UTF-8
/// (RFC 6455 8.1), not only once its last fragment is in: checks `text` from
/// the last character boundary before its `fresh` newest bytes. A code point
/// cut off at the end may still be finished by the next fragment.
fn check_utf8_so_far(text: &[u8], fresh: usize) -> Result<(), DecodeError> {
    let old = text.len() - fresh;
    // The bytes before `old` passed this check: at most the first three bytes
    // of a code point are unfinished there, so a boundary is at most 3 back.
    let is_boundary = |i: &usize| text[*i] & 0xC0 != 0x80;
    let start = (old.saturating_sub(3)..old)
        .rev()
        .find(is_boundary)
        .unwrap_or(old);
    match std::str::from_utf8(&text[start..]) {
        Err(e) if e.error_len().is_some() => Err(DecodeError::InvalidUtf8),
        _ => Ok(()),
    }
}

fn close_code(payload: &[u8]) -> Result<Option<u16>, DecodeError> {
    match payload {
        [] => Ok(None),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_close_code(code) {
                return Err(DecodeError::Protocol("close code not allowed on the wire"));
            }
            std::str::from_utf8(reason).map_err(|_| DecodeError::InvalidUtf8)?;
            Ok(Some(code))
        }
        [_] => Err(DecodeError::Protocol("one-byte close payload")),
    }
}

/// Whether a close frame may carry `code` (RFC 6455 7.4): the defined codes
/// except those reserved for local use (1004, 1005, 1006, 1015), the ones
/// registered since (1012-1014), and the library and application ranges.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Longest header of a server frame.
pub const MAX_HEADER: usize = 10;

/// Kind of server frame.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text message.
    Text,
    /// Binary message (Protobuf replies; the test echo endpoint's echoes).
    Binary,
    /// Close.
    Close,
    /// Pong.
    Pong,
}

/// Length of the header of a server frame with a `length`-byte payload.
pub const fn header_len(length: usize) -> usize {
    match length {
        0..126 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Header of an unmasked, final server frame with a `length`-byte payload, in
/// the shortest length form (RFC 6455 5.2). Built here rather than through
/// tungstenite's `FrameHeader`: every frame of a write takes one, and its
/// formatter writes through `io::Write`.
pub fn header(kind: Kind, length: usize) -> ([u8; MAX_HEADER], usize) {
    let opcode = match kind {
        Kind::Text => 0x1,
        Kind::Binary => 0x2,
        Kind::Close => 0x8,
        Kind::Pong => 0xA,
    };
    let mut out = [0u8; MAX_HEADER];
    out[0] = 0x80 | opcode;
    let len = header_len(length);
    match len {
        2 => out[1] = length as u8,
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(length as u64).to_be_bytes());
        }
    }
    (out, len)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests;
