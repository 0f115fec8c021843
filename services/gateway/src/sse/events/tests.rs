//! Unit tests of SSE rendering: event ids from typed frames.

use std::sync::Arc;

use bytes::Bytes;
use herald_core::protocol::reply::Reply;
use herald_core::protocol::Error;
use serde_json::value::RawValue;

use super::*;
use crate::frame::ChannelPush;

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

fn publication(offset: u64) -> Publication {
    Publication {
        offset,
        data: RawValue::from_string("{}".into()).unwrap(),
        info: None,
        tags: None,
        time: 0,
        trace: None,
    }
}

fn render(events: &mut Events, frame: Frame) -> String {
    let mut out = BytesMut::new();
    events.render(frame, &mut out).unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn publications_carry_the_positions_of_every_tracked_channel() {
    let mut events = Events::default();
    events.requested(2, "user:42");
    let subscribed = SubscribeResult {
        recoverable: true,
        epoch: "e".into(),
        offset: 15,
        publications: vec![publication(14), publication(15)],
        ..Default::default()
    };
    let reply = Frame::from(Reply {
        id: 2,
        body: Body::Subscribe(subscribed),
    });
    let text = render(&mut events, reply);
    assert_eq!(
        text,
        "data: {\"channel\":\"user:42\",\"subscribe\":{\"recoverable\":true,\"epoch\":\"e\",\"offset\":15}}\n\n\
         id: 14:e:user:42\ndata: {\"channel\":\"user:42\",\"pub\":{\"offset\":14,\"data\":{}}}\n\n\
         id: 15:e:user:42\ndata: {\"channel\":\"user:42\",\"pub\":{\"offset\":15,\"data\":{}}}\n\n"
    );
    let live = Frame::Channel(Arc::new(ChannelPush::new(
        Arc::from("user:42"),
        16,
        None,
        encode_publication_push("user:42", &publication(16)),
    )));
    assert!(render(&mut events, live).starts_with("id: 16:e:user:42\ndata: {\"channel\""));
    let join = Frame::Channel(Arc::new(ChannelPush::new(
        Arc::from("user:42"),
        0,
        None,
        Bytes::from_static(br#"{"push":{"channel":"user:42","join":{}}}"#),
    )));
    assert_eq!(
        render(&mut events, join),
        "data: {\"channel\":\"user:42\",\"join\":{}}\n\n",
        "a join carries no id"
    );
}

#[test]
fn an_error_reply_refuses_the_stream() {
    let mut events = Events::default();
    let reply = Frame::from(Reply {
        id: 1,
        body: Body::Error(Error::PermissionDenied),
    });
    let refused = events.render(reply, &mut BytesMut::new());
    assert_eq!(
        refused,
        Err((
            Error::PermissionDenied.code(),
            Error::PermissionDenied.message()
        ))
    );
}
