//! Unit tests of the SSE stream helpers.

use super::*;

#[test]
fn positions_round_trip_through_event_ids() {
    let mut p = Positions::new();
    p.insert("user:42".into(), (7, "abc".into()));
    p.insert("news".into(), (1, "x9".into()));
    let id = encode_positions(&p);
    assert_eq!(id, "1:x9:news,7:abc:user:42");
    assert_eq!(decode_positions(&id), p);
    assert!(decode_positions("garbage").is_empty());
}

#[test]
fn reads_publication_positions_from_shared_frames() {
    let frame =
        Bytes::from_static(br#"{"push":{"channel":"user:42","pub":{"offset":15,"data":{}}}}"#);
    let inner = unwrap_push(&frame);
    assert_eq!(publication_position(&inner), Some(("user:42", 15)));
    assert_eq!(publication_position(br#"{"channel":"c","join":{}}"#), None);
}
