//! Unit tests of the SSE wire: chunk framing, partial writes, the end of the stream.

use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use herald_core::publication::{encode_publication_push, Publication};
use serde_json::value::RawValue;

use super::*;
use crate::frame::{ChannelPush, Frame};
use crate::writer::Wire as _;

/// A socket that takes `room` bytes more, then is full (`Pending`).
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
        self.room -= n;
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

fn publication(channel: &str, offset: u64) -> Frame {
    let publication = Publication {
        offset,
        data: RawValue::from_string(format!("{{\"n\":{offset}}}")).unwrap(),
        info: None,
        tags: None,
        time: herald_core::now_ms(),
        trace: None,
    };
    let json = encode_publication_push(channel, &publication);
    Frame::Channel(Arc::new(ChannelPush::new(
        Arc::from(channel),
        offset,
        Some(publication.time),
        json,
    )))
}

fn queue(frames: impl IntoIterator<Item = Frame>) -> FrameQueue {
    let mut queue = FrameQueue::default();
    for frame in frames {
        queue.push_back(frame);
    }
    queue
}

fn flush(wire: &mut Wire, io: &mut Trickle, frames: &mut FrameQueue) -> Poll<io::Result<()>> {
    let metrics = herald_core::Metrics::new();
    let mut stats = WriteStats::new(metrics.transport(Transport::Sse));
    wire.poll_flush(
        io,
        &mut Context::from_waker(Waker::noop()),
        frames,
        &mut stats,
    )
}

/// The body of a chunked stream, chunk by chunk; panics on bad framing.
fn dechunk(mut bytes: &[u8]) -> (Vec<String>, bool) {
    let mut chunks = Vec::new();
    loop {
        if bytes.is_empty() {
            return (chunks, false);
        }
        let line = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[..line]).unwrap(), 16).unwrap();
        bytes = &bytes[line + 2..];
        if size == 0 {
            assert_eq!(bytes, b"\r\n", "nothing after the last chunk");
            return (chunks, true);
        }
        chunks.push(String::from_utf8(bytes[..size].to_vec()).unwrap());
        assert_eq!(&bytes[size..size + 2], b"\r\n");
        bytes = &bytes[size + 2..];
    }
}

#[test]
fn queued_frames_leave_as_one_chunk_and_nothing_is_kept_after() {
    let mut io = Trickle {
        out: vec![],
        room: usize::MAX,
    };
    let mut wire = Wire::new(Events::default(), true);
    let mut frames = queue([Frame::Ping, publication("c", 1), publication("c", 2)]);
    assert!(matches!(
        flush(&mut wire, &mut io, &mut frames),
        Poll::Ready(Ok(()))
    ));
    assert!(frames.is_empty());
    let (chunks, ended) = dechunk(&io.out);
    assert!(!ended);
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert!(
        chunks[0].starts_with(": ping\n\nid: \ndata: {\"channel\":\"c\""),
        "{}",
        chunks[0]
    );
    assert_eq!(chunks[0].matches("data: ").count(), 2);
    assert_eq!(wire.out.capacity(), 0, "no buffer held once written");
}

#[test]
fn a_partial_write_resumes_where_it_stopped() {
    let mut io = Trickle {
        out: vec![],
        room: 7,
    };
    let mut wire = Wire::new(Events::default(), true);
    let mut frames = queue([publication("c", 1)]);
    assert!(flush(&mut wire, &mut io, &mut frames).is_pending());
    assert_eq!(io.out.len(), 7);
    assert!(
        frames.is_empty(),
        "rendered: the frame is in flight as bytes"
    );
    let mut more = queue([publication("c", 2)]);
    io.room = usize::MAX;
    assert!(matches!(
        flush(&mut wire, &mut io, &mut more),
        Poll::Ready(Ok(()))
    ));
    let (chunks, _) = dechunk(&io.out);
    assert_eq!(chunks.len(), 2, "the unfinished chunk, then the next one");
    assert!(chunks[0].contains("\"n\":1") && chunks[1].contains("\"n\":2"));
}

#[test]
fn finishing_writes_what_is_in_flight_then_the_disconnect_and_the_last_chunk() {
    let mut io = Trickle {
        out: vec![],
        room: 5,
    };
    let mut wire = Wire::new(Events::default(), true);
    let mut frames = queue([publication("c", 1)]);
    assert!(flush(&mut wire, &mut io, &mut frames).is_pending());
    wire.finish(Disconnect::SHUTDOWN);
    let mut late = queue([publication("c", 2)]);
    io.room = usize::MAX;
    assert!(matches!(
        flush(&mut wire, &mut io, &mut late),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(late.len(), 1, "nothing is rendered after the end");
    let (chunks, ended) = dechunk(&io.out);
    assert!(ended);
    assert_eq!(chunks.len(), 2);
    assert!(chunks[0].contains("\"n\":1"));
    assert!(
        chunks[1].starts_with("data: {\"disconnect\":{\"code\":3001"),
        "{}",
        chunks[1]
    );
}

#[test]
fn http10_streams_are_not_chunked() {
    let mut io = Trickle {
        out: vec![],
        room: usize::MAX,
    };
    let mut wire = Wire::new(Events::default(), false);
    let mut frames = queue([Frame::Ping]);
    assert!(matches!(
        flush(&mut wire, &mut io, &mut frames),
        Poll::Ready(Ok(()))
    ));
    wire.finish(Disconnect::SHUTDOWN);
    assert!(matches!(
        flush(&mut wire, &mut io, &mut frames),
        Poll::Ready(Ok(()))
    ));
    let text = String::from_utf8(io.out).unwrap();
    assert!(
        text.starts_with(": ping\n\ndata: {\"disconnect\""),
        "{text}"
    );
    assert!(text.ends_with("\n\n"));
}

#[test]
fn frames_without_events_write_nothing() {
    let mut io = Trickle {
        out: vec![],
        room: usize::MAX,
    };
    let mut wire = Wire::new(Events::default(), true);
    let mut frames = queue([Frame::Protobuf(Bytes::from_static(b"\x01"))]);
    assert!(matches!(
        flush(&mut wire, &mut io, &mut frames),
        Poll::Ready(Ok(()))
    ));
    assert!(io.out.is_empty());
    assert_eq!(wire.out.capacity(), 0);
}
