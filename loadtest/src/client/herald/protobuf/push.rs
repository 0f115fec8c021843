//! Decoding what a Herald server sends over Protobuf once a connection is set up: a binary
//! message holds varint-length-delimited `Reply` messages, an empty one being a ping and a
//! `push` one a publication or a disconnect. The wire format is walked in place, so nothing is
//! allocated per publication; the handshake's replies are `client::herald::protobuf`'s.

use prost::encoding::{decode_key, decode_varint, WireType};

use crate::client::conn::Event;

/// Decodes one binary message: publications, pings and disconnect pushes. Replies to commands
/// are ignored; a malformed message ends the decoding of the rest.
pub fn decode(mut data: &[u8], out: &mut Vec<Event>) {
    while !data.is_empty() {
        let Some(reply) = delimited(&mut data) else {
            return;
        };
        if reply.is_empty() {
            out.push(Event::Ping);
            continue;
        }
        for (tag, field) in Fields(reply) {
            if let (4, Field::Bytes(push)) = (tag, field) {
                decode_push(push, out);
            }
        }
    }
}

/// Takes the next length-delimited message off the front of `data`.
pub fn delimited<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(data).ok()?).ok()?;
    let (message, rest) = data.split_at_checked(len)?;
    *data = rest;
    Some(message)
}

/// `Push`: `pub` (4) and `disconnect` (11) matter here.
fn decode_push(push: &[u8], out: &mut Vec<Event>) {
    for (tag, field) in Fields(push) {
        match (tag, field) {
            (4, Field::Bytes(publication)) => {
                let (mut payload, mut offset) = (None, 0);
                for (tag, field) in Fields(publication) {
                    match (tag, field) {
                        (4, Field::Bytes(data)) => payload = serde_json::from_slice(data).ok(),
                        (6, Field::Varint(v)) => offset = v,
                        _ => {}
                    }
                }
                if let Some(p) = payload {
                    out.push(Event::Pub(p, (offset > 0).then_some(offset)));
                }
            }
            (11, Field::Bytes(disconnect)) => {
                let (mut code, mut reason) = (None, "");
                for (tag, field) in Fields(disconnect) {
                    match (tag, field) {
                        (1, Field::Varint(c)) => code = u16::try_from(c).ok(),
                        (2, Field::Bytes(r)) => reason = std::str::from_utf8(r).unwrap_or(""),
                        _ => {}
                    }
                }
                let code_text = code.map_or_else(|| "-".to_owned(), |c| c.to_string());
                out.push(Event::Closed(
                    code,
                    format!("disconnect push code {code_text} {reason:?}"),
                ));
            }
            _ => {}
        }
    }
}

/// The value of one field.
enum Field<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2: bytes, a string or an embedded message.
    Bytes(&'a [u8]),
    /// Fixed 32 or 64 bits, unused here.
    Fixed,
}

/// The fields of one message in wire order, as (field number, value); ends at the first
/// malformed field.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Field<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            self.0 = &[];
        }
        field
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let (tag, wire_type) = decode_key(&mut self.0).ok()?;
        let value = match wire_type {
            WireType::Varint => Field::Varint(decode_varint(&mut self.0).ok()?),
            WireType::LengthDelimited => Field::Bytes(delimited(&mut self.0)?),
            WireType::SixtyFourBit => {
                self.0 = self.0.get(8..)?;
                Field::Fixed
            }
            WireType::ThirtyTwoBit => {
                self.0 = self.0.get(4..)?;
                Field::Fixed
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        Some((tag, value))
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages;
    use super::*;
    use crate::client::conn::Payload;
    use prost::encoding::{encode_key, encode_varint};
    use prost::Message as _;

    /// Appends field `tag` holding `bytes` (wire type 2).
    fn bytes_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn varint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }

    /// `Reply{push: Push{channel, pub: Publication{data, offset, time}}}`, as Herald writes it.
    fn publication(seq: u64, offset: u64) -> Vec<u8> {
        let mut p = Vec::new();
        bytes_field(
            &mut p,
            4,
            format!("{{\"seq\":{seq},\"ts\":{}}}", seq * 10).as_bytes(),
        );
        varint_field(&mut p, 6, offset);
        encode_key(9, WireType::Varint, &mut p);
        encode_varint(1_700_000_000_000, &mut p);
        let mut push = Vec::new();
        bytes_field(&mut push, 2, b"stock:LOAD");
        bytes_field(&mut push, 4, &p);
        let mut reply = Vec::new();
        bytes_field(&mut reply, 4, &push);
        reply
    }

    fn delimit(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            encode_varint(m.len() as u64, &mut out);
            out.extend_from_slice(m);
        }
        out
    }

    #[test]
    fn several_replies_in_one_message_with_a_ping_among_them() {
        let subscribe_reply = messages::Reply {
            id: 2,
            ..Default::default()
        }
        .encode_to_vec();
        let frame = delimit(&[
            &publication(1, 11),
            &[],
            &subscribe_reply,
            &publication(2, 12),
        ]);
        let mut out = Vec::new();
        decode(&frame, &mut out);
        assert_eq!(
            out,
            vec![
                Event::Pub(Payload { seq: 1, ts: 10 }, Some(11)),
                Event::Ping,
                Event::Pub(Payload { seq: 2, ts: 20 }, Some(12)),
            ]
        );
        out.clear();
        decode(&[0], &mut out);
        assert_eq!(out, vec![Event::Ping], "a lone zero byte is a ping");
    }

    #[test]
    fn disconnect_pushes_carry_their_code_and_reason() {
        let mut disconnect = Vec::new();
        varint_field(&mut disconnect, 1, 3001);
        bytes_field(&mut disconnect, 2, b"shutdown");
        varint_field(&mut disconnect, 3, 1);
        let mut push = Vec::new();
        bytes_field(&mut push, 11, &disconnect);
        let mut reply = Vec::new();
        bytes_field(&mut reply, 4, &push);
        let mut out = Vec::new();
        decode(&delimit(&[&reply]), &mut out);
        assert!(
            matches!(&out[..], [Event::Closed(Some(3001), r)] if r.contains("shutdown")),
            "{out:?}"
        );
    }

    #[test]
    fn a_truncated_message_ends_the_frame_and_keeps_what_came_before() {
        let mut frame = delimit(&[&publication(5, 6)]);
        let whole = frame.len();
        frame.extend_from_slice(&delimit(&[&publication(7, 8)]));
        frame.truncate(frame.len() - 3);
        let mut out = Vec::new();
        decode(&frame, &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 5, ts: 50 }, Some(6))]);
        out.clear();
        decode(&frame[..whole - 1], &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn fixed_width_and_unknown_fields_are_skipped() {
        let mut p = Vec::new();
        encode_key(15, WireType::SixtyFourBit, &mut p);
        p.extend_from_slice(&[0; 8]);
        encode_key(16, WireType::ThirtyTwoBit, &mut p);
        p.extend_from_slice(&[0; 4]);
        bytes_field(&mut p, 4, br#"{"seq":3,"ts":4}"#);
        let mut push = Vec::new();
        bytes_field(&mut push, 4, &p);
        let mut reply = Vec::new();
        varint_field(&mut reply, 1, 0);
        bytes_field(&mut reply, 4, &push);
        let mut out = Vec::new();
        decode(&delimit(&[&reply]), &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 3, ts: 4 }, None)]);
    }
}
