//! The outbox's queueing rules: bounds, replies, holding back, closing.

use super::*;

fn frame(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn full_queue_closes_as_slow() {
    let outbox = Outbox::new(2);
    assert!(outbox.send(frame("a")));
    assert!(outbox.send(frame("b")));
    assert!(!outbox.send(frame("c")));
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
}

#[test]
fn the_high_water_mark_stays_after_frames_leave() {
    let outbox = Outbox::new(8);
    for _ in 0..3 {
        outbox.send(frame("a"));
    }
    assert_eq!(outbox.take_frames().len(), 3);
    outbox.send(frame("b"));
    assert_eq!(outbox.high_water(), 3);
    assert!(outbox.close(Disconnect::SLOW), "the first reason wins");
    assert!(!outbox.close(Disconnect::SHUTDOWN));
}

#[test]
fn replies_take_no_room_from_deliveries() {
    let outbox = Outbox::new(2);
    for _ in 0..10 {
        assert!(outbox.reply(frame("reply")));
    }
    assert!(outbox.send(frame("a")));
    assert!(outbox.send(frame("b")));
    assert_eq!(outbox.closing(), None, "ten replies and two frames fit");
    assert!(!outbox.send(frame("c")));
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
}

#[test]
fn unread_replies_are_bounded() {
    let outbox = Outbox::new(2);
    for _ in 0..MAX_QUEUED_REPLIES {
        assert!(outbox.reply(frame("reply")));
    }
    assert!(!outbox.reply(frame("one too many")));
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
}

#[test]
fn held_frames_follow_the_reply_without_duplicates() {
    let outbox = Outbox::new(8);
    let ch: Arc<str> = Arc::from("c");
    outbox.hold(&ch);
    outbox.send_channel("c", 4, &frame("p4"));
    outbox.send_channel("c", 5, &frame("p5"));
    outbox.send_channel("other", 1, &frame("o1"));
    outbox.release(Some(frame("reply")), &[(ch, 4)]);
    outbox.send_channel("c", 5, &frame("late p5"));
    outbox.send_channel("c", 6, &frame("p6"));
    outbox.send_channel("c", 7, &frame("p7"));
    let got: Vec<Bytes> = outbox.take_frames().into_iter().collect();
    assert_eq!(
        got,
        [
            frame("o1"),
            frame("reply"),
            frame("p5"),
            frame("p6"),
            frame("p7")
        ]
    );
}

#[test]
fn nothing_is_queued_after_close() {
    let outbox = Outbox::new(8);
    outbox.close(Disconnect::INSUFFICIENT_STATE);
    assert!(!outbox.send(frame("after")));
    assert!(outbox.take_frames().is_empty());
}
