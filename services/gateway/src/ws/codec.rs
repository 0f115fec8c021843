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
    /// A binary message (Herald speaks JSON only).
    Binary,
    /// A ping; the payload goes back in the pong.
    Ping(Vec<u8>),
    /// The client closes, with its close code if it sent one.
    Close(Option<u16>),
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
type Decoded = Result<(usize, Option<Incoming>), DecodeError>;

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
    ) -> Result<Option<Incoming>, DecodeError> {
        match opcode {
            OpCode::Control(control) => {
                if !fin || payload.len() > 125 {
                    return Err(DecodeError::Protocol("fragmented or long control frame"));
                }
                Ok(match control {
                    Control::Ping => Some(Incoming::Ping(payload)),
                    Control::Pong => None,
                    Control::Close => Some(Incoming::Close(close_code(&payload)?)),
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
                self.fragments = Some((whole, text));
                Ok(None)
            }
            OpCode::Data(Data::Reserved(_)) => Err(DecodeError::Protocol("reserved opcode")),
        }
    }
}

fn message(payload: Vec<u8>, text: bool) -> Result<Incoming, DecodeError> {
    if !text {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| DecodeError::InvalidUtf8)
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
    /// Close.
    Close,
    /// Pong.
    Pong,
}

/// Header of an unmasked, final server frame with a `length`-byte payload.
pub fn header(kind: Kind, length: usize) -> ([u8; MAX_HEADER], usize) {
    let opcode = match kind {
        Kind::Text => OpCode::Data(Data::Text),
        Kind::Close => OpCode::Control(Control::Close),
        Kind::Pong => OpCode::Control(Control::Pong),
    };
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = [0u8; MAX_HEADER];
    let mut cursor = Cursor::new(&mut out[..]);
    header
        .format(length as u64, &mut cursor)
        .expect("a server header fits in 10 bytes");
    let len = usize::try_from(cursor.position()).expect("header length");
    (out, len)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1024;

    /// A masked client frame as a browser would send it.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        masked_frame(opcode, fin, payload, [0x11, 0x22, 0x33, 0x44])
    }

    /// A client frame masked with `mask`.
    pub(super) fn masked_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    fn text(s: &str) -> Incoming {
        Incoming::Text(s.to_owned())
    }

    #[test]
    fn decodes_a_whole_frame_without_keeping_bytes() {
        let mut d = Decoder::default();
        let got = d.decode(&client_frame(0x1, true, b"{\"id\":1}"), LIMIT);
        assert_eq!(got, Ok(Some(text("{\"id\":1}"))));
        assert!(!d.has_partial());
        assert_eq!(d.partial.capacity(), 0, "nothing allocated between frames");
    }

    #[test]
    fn reassembles_frames_split_across_reads_byte_by_byte() {
        let frame = client_frame(0x1, true, &[b'x'; 300]);
        let mut d = Decoder::default();
        for byte in &frame[..frame.len() - 1] {
            assert_eq!(d.decode(std::slice::from_ref(byte), LIMIT), Ok(None));
        }
        let got = d.decode(&frame[frame.len() - 1..], LIMIT);
        assert_eq!(got, Ok(Some(text(&"x".repeat(300)))));
        assert!(!d.has_partial());
    }

    #[test]
    fn several_frames_in_one_read_come_out_one_by_one() {
        let mut bytes = client_frame(0x1, true, b"a");
        bytes.extend(client_frame(0x9, true, b"p"));
        bytes.extend(client_frame(0xA, true, b"ignored pong"));
        bytes.extend(client_frame(0x1, true, b"b"));
        let mut d = Decoder::default();
        assert_eq!(d.decode(&bytes, LIMIT), Ok(Some(text("a"))));
        assert_eq!(
            d.decode(&[], LIMIT),
            Ok(Some(Incoming::Ping(b"p".to_vec())))
        );
        assert_eq!(d.decode(&[], LIMIT), Ok(Some(text("b"))));
        assert_eq!(d.decode(&[], LIMIT), Ok(None));
        assert!(!d.has_partial());
    }

    #[test]
    fn joins_fragments_with_control_frames_between_them() {
        let mut bytes = client_frame(0x1, false, b"hel");
        bytes.extend(client_frame(0x9, true, b""));
        bytes.extend(client_frame(0x0, false, b"lo "));
        bytes.extend(client_frame(0x0, true, "wörld".as_bytes()));
        let mut d = Decoder::default();
        assert_eq!(d.decode(&bytes, LIMIT), Ok(Some(Incoming::Ping(vec![]))));
        assert_eq!(d.decode(&[], LIMIT), Ok(Some(text("hello wörld"))));
    }

    #[test]
    fn refuses_what_the_protocol_forbids() {
        let mut unmasked = client_frame(0x1, true, b"x");
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (
                client_frame(0x1, true, &[b'x'; LIMIT + 1]),
                DecodeError::TooBig,
            ),
            (
                client_frame(0x1, true, &[0xff, 0xfe]),
                DecodeError::InvalidUtf8,
            ),
            (
                client_frame(0x0, true, b"x"),
                DecodeError::Protocol("continuation without a message"),
            ),
            (
                client_frame(0x3, true, b"x"),
                DecodeError::Protocol("bad frame header"),
            ),
            (
                client_frame(0x9, false, b"x"),
                DecodeError::Protocol("fragmented or long control frame"),
            ),
            (
                client_frame(0x1 | 0x40, true, b"x"),
                DecodeError::Protocol("reserved bits set"),
            ),
            (unmasked, DecodeError::Protocol("unmasked client frame")),
        ];
        for (bytes, want) in cases {
            assert_eq!(Decoder::default().decode(&bytes, LIMIT), Err(want));
        }
    }

    #[test]
    fn a_length_with_the_top_bit_set_is_a_protocol_error() {
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        let got = Decoder::default().decode(&frame, LIMIT);
        let want = DecodeError::Protocol("payload length with its top bit set");
        assert_eq!(got, Err(want));
    }

    #[test]
    fn an_oversize_frame_is_refused_from_its_header_alone() {
        let frame = client_frame(0x1, true, &vec![b'x'; 70_000]);
        let got = Decoder::default().decode(&frame[..14], LIMIT);
        assert_eq!(got, Err(DecodeError::TooBig));
    }

    #[test]
    fn fragments_count_toward_the_limit() {
        let mut bytes = client_frame(0x1, false, &[b'x'; 600]);
        bytes.extend(client_frame(0x0, true, &[b'x'; 600]));
        assert_eq!(
            Decoder::default().decode(&bytes, LIMIT),
            Err(DecodeError::TooBig)
        );
    }

    #[test]
    fn close_frames_carry_their_code() {
        let mut d = Decoder::default();
        let got = d.decode(
            &client_frame(0x8, true, &[0x03, 0xe8, b'b', b'y', b'e']),
            LIMIT,
        );
        assert_eq!(got, Ok(Some(Incoming::Close(Some(1000)))));
        let got = Decoder::default().decode(&client_frame(0x8, true, b""), LIMIT);
        assert_eq!(got, Ok(Some(Incoming::Close(None))));
        let binary = Decoder::default().decode(&client_frame(0x2, true, b"\x00"), LIMIT);
        assert_eq!(binary, Ok(Some(Incoming::Binary)));
    }

    #[test]
    fn close_codes_reserved_or_undefined_are_protocol_errors() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let got =
                Decoder::default().decode(&client_frame(0x8, true, &code.to_be_bytes()), LIMIT);
            let want = DecodeError::Protocol("close code not allowed on the wire");
            assert_eq!(got, Err(want), "{code}");
        }
        for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
            let got =
                Decoder::default().decode(&client_frame(0x8, true, &code.to_be_bytes()), LIMIT);
            assert_eq!(got, Ok(Some(Incoming::Close(Some(code)))));
        }
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        assert_eq!(
            header(Kind::Text, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        let (h, n) = header(Kind::Text, 300);
        assert_eq!(&h[..n], &[0x81, 126, 0x01, 0x2c]);
        let (h, n) = header(Kind::Close, 70_000);
        assert_eq!(&h[..n], &[0x88, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let (h, n) = header(Kind::Pong, 0);
        assert_eq!(&h[..n], &[0x8A, 0]);
    }
}
