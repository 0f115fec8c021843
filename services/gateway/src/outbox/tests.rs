//! The outbox's queueing rules: bounds, replies, holding back, closing.

use super::*;
use bytes::Bytes;

fn frame(s: &'static str) -> Frame {
    Frame::Json(Bytes::from_static(s.as_bytes()))
}

/// A channel push whose JSON is just `name`.
fn push(channel: &str, offset: u64, name: &'static str) -> Arc<ChannelPush> {
    Arc::new(ChannelPush::new(
        Arc::from(channel),
        offset,
        None,
        Bytes::from_static(name.as_bytes()),
    ))
}

fn names(frames: FrameQueue) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8(f.json().to_vec()).unwrap())
        .collect()
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
    outbox.send_channel(&push("c", 4, "p4"));
    outbox.send_channel(&push("c", 5, "p5"));
    outbox.send_channel(&push("other", 1, "o1"));
    outbox.release(Some(frame("reply")), &[(ch, 4)]);
    outbox.send_channel(&push("c", 5, "late p5"));
    outbox.send_channel(&push("c", 6, "p6"));
    outbox.send_channel(&push("c", 7, "p7"));
    assert_eq!(
        names(outbox.take_frames()),
        ["o1", "reply", "p5", "p6", "p7"]
    );
}

#[test]
fn nothing_is_queued_after_close() {
    let outbox = Outbox::new(8);
    outbox.close(Disconnect::INSUFFICIENT_STATE);
    assert!(!outbox.send(frame("after")));
    assert!(outbox.take_frames().is_empty());
}

/// A writer that only counts how often a flusher ran it.
struct Idle;

impl Flush for Idle {
    fn flush_now(&self, _: &mut crate::flusher::FlushStats) {}
}

fn attached(capacity: usize) -> (Arc<Outbox>, Arc<Shard>, Arc<dyn Flush>) {
    let outbox = Outbox::new(capacity);
    let shard = Arc::new(Shard::default());
    let writer: Arc<dyn Flush> = Arc::new(Idle);
    outbox.attach(Arc::downgrade(&writer), shard.clone());
    (outbox, shard, writer)
}

#[test]
fn frames_schedule_the_writer_once_until_the_flusher_takes_them() {
    let (outbox, shard, _writer) = attached(8);
    outbox.send(frame("a"));
    outbox.send(frame("b"));
    assert_eq!(shard.take_dirty().len(), 1, "one schedule for two frames");
    let taken = outbox.take_for_flusher().expect("the flusher's turn");
    assert_eq!(taken.len(), 2);
    outbox.send(frame("c"));
    assert_eq!(shard.take_dirty().len(), 1, "scheduled again once taken");
}

#[test]
fn a_full_socket_hands_the_writing_to_the_task_and_back() {
    let (outbox, shard, _writer) = attached(8);
    outbox.send(frame("a"));
    let taken = outbox.take_for_flusher().unwrap();
    outbox.send(frame("b"));
    outbox.put_back(taken, true);
    assert!(outbox.task_writes());
    shard.take_dirty();
    outbox.send(frame("c"));
    assert!(shard.take_dirty().is_empty(), "the task writes now");
    assert!(outbox.take_for_flusher().is_none(), "the flusher keeps off");
    assert_eq!(names(outbox.take_for_task()), ["a", "b", "c"]);
    assert!(outbox.task_wrote_all());
    assert!(!outbox.task_writes());
    outbox.send(frame("d"));
    assert_eq!(shard.take_dirty().len(), 1, "the flusher's turn again");
}

#[test]
fn unwritten_frames_go_back_in_front_and_count_all_along() {
    let (outbox, _shard, _writer) = attached(3);
    outbox.send(frame("a"));
    outbox.send(frame("b"));
    let taken = outbox.take_for_flusher().unwrap();
    outbox.send(frame("c"));
    outbox.put_back(taken, true);
    assert_eq!(names(outbox.take_for_task()), ["a", "b", "c"]);
    outbox.put_back(FrameQueue::default(), false);

    let (outbox, _shard, _writer) = attached(2);
    outbox.send(frame("a"));
    outbox.send(frame("b"));
    let _taken = outbox.take_for_flusher().unwrap();
    assert!(!outbox.send(frame("c")), "two frames in flight fill it");
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
}

#[test]
fn only_slow_and_insufficient_state_closes_drop_queued_frames() {
    assert!(!flushes_before_close(Disconnect::SLOW));
    assert!(!flushes_before_close(Disconnect::INSUFFICIENT_STATE));
    assert!(flushes_before_close(Disconnect::SHUTDOWN));
    assert!(flushes_before_close(Disconnect::BAD_REQUEST));
}

#[test]
fn replies_in_flight_or_put_back_stay_replies() {
    let (outbox, _shard, _writer) = attached(2);
    for _ in 0..5 {
        outbox.reply(frame("reply"));
    }
    let taken = outbox.take_for_flusher().unwrap();
    assert!(
        outbox.send(frame("a")),
        "five replies in flight leave the room"
    );
    outbox.put_back(taken, true);
    assert!(outbox.send(frame("b")));
    assert_eq!(
        outbox.closing(),
        None,
        "a full socket with replies is not slow"
    );
    assert!(!outbox.send(frame("c")), "two deliveries fill it");
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
}
