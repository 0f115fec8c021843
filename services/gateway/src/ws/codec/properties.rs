//! Property tests of the decoder: whatever bytes arrive, split however the
//! network splits them, decoding never panics and gives the same messages
//! (and the same error) as decoding them in one piece; messages a client
//! frames legally (any masks, fragments, pings between fragments) come out
//! exactly as sent.

use proptest::prelude::*;

use super::tests::masked_frame;
use super::{DecodeError, Decoder, Incoming};

const LIMIT: usize = 4096;

/// Decodes `bytes` fed in pieces that end at `cuts`; stops at the first error.
fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Vec<Incoming>, Option<DecodeError>) {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    let mut decoder = Decoder::default();
    let (mut out, mut start) = (Vec::new(), 0);
    for end in ends {
        let mut input = &bytes[start..end];
        start = end;
        loop {
            match decoder.decode(input, LIMIT) {
                Ok(Some(message)) => out.push(message),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
            input = &[];
        }
    }
    (out, None)
}

/// One message as a client may frame it: the text in `fragments` pieces,
/// a ping after each non-final piece.
fn framed(text: &str, fragments: usize, mask: [u8; 4]) -> (Vec<u8>, Vec<Incoming>) {
    let bytes = text.as_bytes();
    let size = bytes.len().div_ceil(fragments.max(1)).max(1);
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(size).collect()
    };
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        wire.extend(masked_frame(opcode, last, piece, mask));
        if !last {
            wire.extend(masked_frame(0x9, true, b"p", mask));
            expected.push(Incoming::Ping(b"p".to_vec()));
        }
    }
    expected.push(Incoming::Text(text.to_owned()));
    (wire, expected)
}

proptest! {
    #[test]
    fn any_bytes_split_anywhere_decode_as_in_one_piece(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assert_eq!(decode_in_pieces(&bytes, &cuts), decode_in_pieces(&bytes, &[]));
    }

    #[test]
    fn legal_frames_come_out_as_sent(
        messages in proptest::collection::vec(("\\PC{0,200}", 1usize..4, any::<[u8; 4]>()), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let (mut wire, mut expected) = (Vec::new(), Vec::new());
        for (text, fragments, mask) in &messages {
            let (bytes, out) = framed(text, *fragments, *mask);
            wire.extend(bytes);
            expected.extend(out);
        }
        prop_assert_eq!(decode_in_pieces(&wire, &cuts), (expected, None));
    }
}
