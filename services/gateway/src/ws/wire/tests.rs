//! Unit tests of the wire: messages, batching and partial writes.

use super::*;
use crate::frame::Frame;
use crate::writer::Wire as _;
use herald_core::metrics::labels::Transport;
use std::task::Waker;

/// A socket that takes at most `room` bytes per call, `Pending` when `room` is 0.
struct Trickle {
    out: Vec<u8>,
    room: usize,
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.room == 0 {
            return Poll::Pending;
        }
        let n = buf.len().min(self.room);
        self.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn frames(list: &[&'static str]) -> FrameQueue {
    let mut queue = FrameQueue::default();
    for s in list {
        queue.push_back(Frame::Json(Bytes::from_static(s.as_bytes())));
    }
    queue
}

fn flush(wire: &mut Wire, io: &mut Trickle, queue: &mut FrameQueue) -> Poll<io::Result<()>> {
    let metrics = herald_core::Metrics::new();
    let mut stats = WriteStats::new(metrics.transport(Transport::WebSocket));
    wire.poll_flush(
        io,
        &mut Context::from_waker(Waker::noop()),
        queue,
        &mut stats,
    )
}

#[test]
fn writes_up_to_the_batch_at_once_each_frame_its_own_message() {
    let mut io = Trickle {
        out: vec![],
        room: usize::MAX,
    };
    let mut wire = Wire::new(2, Format::Json);
    let mut queue = frames(&["a", "bb", "c"]);
    let metrics = herald_core::Metrics::new();
    let ws = metrics.transport(Transport::WebSocket);
    let mut stats = WriteStats::new(ws);
    let cx = &mut Context::from_waker(Waker::noop());
    let flushed = wire.poll_flush(&mut io, cx, &mut queue, &mut stats);
    assert!(matches!(flushed, Poll::Ready(Ok(()))));
    assert!(queue.is_empty());
    assert_eq!(io.out, b"\x81\x01a\x81\x02bb\x81\x01c");
    stats.flush();
    let counted = (
        ws.writes.get(),
        ws.frames_written.get(),
        ws.bytes_written.get(),
    );
    // The mock takes one slice per write: header, "a", header, "bb", then header, "c".
    assert_eq!(counted, (6, 3, 10));
    assert_eq!(ws.pushes_per_write.get_sample_sum(), 3.0);
}

#[test]
fn partial_writes_resume_where_they_stopped_and_control_frames_wait() {
    let mut io = Trickle {
        out: vec![],
        room: 3,
    };
    let mut wire = Wire::new(8, Format::Json);
    let mut queue = frames(&["hello", "world"]);
    let first = flush(&mut wire, &mut io, &mut queue);
    assert!(
        matches!(first, Poll::Ready(Ok(()))),
        "three bytes at a time, never pending"
    );
    assert_eq!(io.out, b"\x81\x05hello\x81\x05world");

    io = Trickle {
        out: vec![],
        room: 0,
    };
    let mut queue = frames(&["x"]);
    assert!(flush(&mut wire, &mut io, &mut queue).is_pending());
    assert_eq!(wire.frames_in_flight(), 1);
    wire.push_control(Kind::Pong, b"p");
    queue.push_back(Frame::Json(Bytes::from_static(b"y")));
    io.room = 1;
    assert!(matches!(
        flush(&mut wire, &mut io, &mut queue),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(io.out, b"\x81\x01x\x8a\x01p\x81\x01y");
    assert_eq!(wire.frames_in_flight(), 0);
}

/// The bytes `fill_slices` lays out for `parts` in `room` slices, less `skip`.
fn laid_out(parts: &[Bytes], skip: usize, room: usize) -> Vec<u8> {
    let mut headers = vec![([0; MAX_HEADER], 0); parts.len()];
    let mut slices = vec![IoSlice::new(&[]); room];
    let parts_iter = parts.iter().map(|p| &p[..]);
    let n = fill_slices(&mut slices, &mut headers, Kind::Text, parts_iter, skip);
    slices[..n].iter().flat_map(|s| s.to_vec()).collect()
}

#[test]
fn slices_skip_what_was_already_written() {
    let parts = [Bytes::from_static(b"ab"), Bytes::from_static(b"cde")];
    assert_eq!(laid_out(&parts, 0, 8), b"\x81\x02ab\x81\x03cde");
    assert_eq!(laid_out(&parts, 3, 8), b"b\x81\x03cde");
    assert_eq!(laid_out(&parts, 9, 8), b"");
    assert_eq!(laid_out(&parts, 1, 2), b"\x02ab");
}

#[test]
fn protobuf_replies_go_in_binary_messages_one_each() {
    let mut io = Trickle {
        out: vec![],
        room: usize::MAX,
    };
    let mut wire = Wire::new(8, Format::Protobuf);
    let mut queue = FrameQueue::default();
    queue.push_back(Frame::Protobuf(Bytes::from_static(b"\x02ab")));
    queue.push_back(Frame::Ping);
    queue.push_back(Frame::Protobuf(Bytes::from_static(b"\x01c")));
    assert!(matches!(
        flush(&mut wire, &mut io, &mut queue),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(io.out, b"\x82\x03\x02ab\x82\x01\x00\x82\x02\x01c");
}

/// A stream that keeps what it is given until flushed, as a TLS stream keeps
/// encrypted bytes the socket did not take; flushing is `Pending` until `open`.
struct Buffering {
    held: Vec<u8>,
    out: Vec<u8>,
    open: bool,
}

impl AsyncWrite for Buffering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.open {
            return Poll::Pending;
        }
        let held = std::mem::take(&mut self.held);
        self.out.extend_from_slice(&held);
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn a_flush_is_done_only_when_the_stream_has_flushed_too() {
    let mut io = Buffering {
        held: vec![],
        out: vec![],
        open: false,
    };
    let mut wire = Wire::new(8, Format::Json);
    let mut queue = frames(&["a"]);
    let metrics = herald_core::Metrics::new();
    let mut stats = WriteStats::new(metrics.transport(Transport::WebSocket));
    let cx = &mut Context::from_waker(Waker::noop());
    let first = wire.poll_flush(&mut io, cx, &mut queue, &mut stats);
    assert!(first.is_pending(), "bytes still held by the stream");
    assert!(queue.is_empty());
    assert_eq!(wire.frames_in_flight(), 0);
    io.open = true;
    let second = wire.poll_flush(&mut io, cx, &mut queue, &mut stats);
    assert!(matches!(second, Poll::Ready(Ok(()))));
    assert_eq!(io.out, b"\x81\x01a");
}
