//! Unit tests of the decoder and the server frame header.

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
    assert_eq!(binary, Ok(Some(Incoming::Binary(vec![0]))));
}

#[test]
fn decode_message_keeps_binary_payloads_across_fragments() {
    let mut bytes = client_frame(0x2, false, b"\x00\xff");
    bytes.extend(client_frame(0x9, true, b"p"));
    bytes.extend(client_frame(0x0, true, b"\x80"));
    let mut d = Decoder::default();
    let ping = d.decode_message(&bytes, LIMIT);
    assert_eq!(ping, Ok(Some(Message::Ping(b"p".to_vec()))));
    let binary = d.decode_message(&[], LIMIT);
    assert_eq!(binary, Ok(Some(Message::Binary(b"\x00\xff\x80".to_vec()))));
    assert_eq!(d.decode_message(&[], LIMIT), Ok(None));
}

#[test]
fn a_fragmented_text_fails_at_the_first_fragment_that_cannot_be_utf8() {
    // Autobahn 6.4.1/6.4.2: the message is failed before its last fragment.
    let mut d = Decoder::default();
    assert_eq!(d.decode(&client_frame(0x1, false, b"ok"), LIMIT), Ok(None));
    let bad = client_frame(0x0, false, &[0xce, 0xba, 0xf4, 0x90]);
    assert_eq!(d.decode(&bad, LIMIT), Err(DecodeError::InvalidUtf8));
    let first = Decoder::default().decode(&client_frame(0x1, false, &[0xff]), LIMIT);
    assert_eq!(first, Err(DecodeError::InvalidUtf8));
}

#[test]
fn a_code_point_cut_between_fragments_is_not_an_error() {
    let word = "κόσμε€𝄞".as_bytes();
    for cut in 1..word.len() {
        let mut d = Decoder::default();
        let (head, tail) = word.split_at(cut);
        let first = d.decode(&client_frame(0x1, false, head), LIMIT);
        assert_eq!(first, Ok(None), "cut at {cut}");
        let mut bytes = Vec::new();
        for byte in tail {
            bytes.extend(client_frame(0x0, false, std::slice::from_ref(byte)));
        }
        bytes.extend(client_frame(0x0, true, b""));
        let got = d.decode(&bytes, LIMIT);
        assert_eq!(got, Ok(Some(text("κόσμε€𝄞"))), "cut at {cut}");
    }
}

#[test]
fn close_codes_reserved_or_undefined_are_protocol_errors() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let got = Decoder::default().decode(&client_frame(0x8, true, &code.to_be_bytes()), LIMIT);
        let want = DecodeError::Protocol("close code not allowed on the wire");
        assert_eq!(got, Err(want), "{code}");
    }
    for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
        let got = Decoder::default().decode(&client_frame(0x8, true, &code.to_be_bytes()), LIMIT);
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
    let (h, n) = header(Kind::Binary, 2);
    assert_eq!(&h[..n], &[0x82, 2]);
}

#[test]
fn server_headers_are_the_ones_tungstenite_formats() {
    use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
    use tungstenite::protocol::frame::FrameHeader;
    let kinds = [
        (Kind::Text, OpCode::Data(Data::Text)),
        (Kind::Binary, OpCode::Data(Data::Binary)),
        (Kind::Close, OpCode::Control(Control::Close)),
        (Kind::Pong, OpCode::Control(Control::Pong)),
    ];
    let lengths = [
        0,
        1,
        125,
        126,
        127,
        65_535,
        65_536,
        1 << 20,
        usize::MAX >> 1,
    ];
    for (kind, opcode) in kinds {
        for length in lengths {
            let mut expected = Vec::new();
            let reference = FrameHeader {
                opcode,
                ..FrameHeader::default()
            };
            reference.format(length as u64, &mut expected).unwrap();
            let (h, n) = header(kind, length);
            assert_eq!(&h[..n], &expected[..], "{kind:?} {length}");
            assert_eq!(header_len(length), n);
        }
    }
}
