//! One SSE stream's write state when Herald's listener serves it: renders the
//! queued frames into events ([`Events`]) as one chunk of the response body
//! per write (`<hex length>\r\n<events>\r\n`; an HTTP/1.0 response has no
//! chunks and ends when the connection closes), and keeps what a partial
//! write left over. Rendered bytes live only until they are written: an idle
//! stream holds no buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, BytesMut};
use herald_core::metrics::labels::Transport;
use herald_core::protocol::reply::disconnect_push;
use herald_core::protocol::Disconnect;
use herald_core::publication::push_body;
use tokio::io::AsyncWrite;

use super::events::{event, Events};
use crate::frame_queue::FrameQueue;
use crate::write_stats::WriteStats;
use crate::writer;

/// Room left in front of a chunk's events for its size line (hex digits of a
/// `usize` and CRLF), filled once the size is known.
const SIZE_LINE_MAX: usize = usize::BITS as usize / 4 + 2;

/// The terminating chunk of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// One stream's unfinished write.
#[derive(Debug)]
pub struct Wire {
    events: Events,
    chunked: bool,
    /// Bytes to write, from `written` on; empty (unallocated) when idle.
    out: BytesMut,
    written: usize,
    /// The disconnect event and the end of the body are queued.
    finished: bool,
}

impl Wire {
    /// A wire rendering with `events` (the stream's positions so far), in
    /// chunks unless the client spoke HTTP/1.0.
    pub fn new(events: Events, chunked: bool) -> Wire {
        Wire {
            events,
            chunked,
            out: BytesMut::new(),
            written: 0,
            finished: false,
        }
    }

    /// Ends the stream after what is in flight: the disconnect event for
    /// `reason`, then the end of the body. Frames still queued are not sent.
    pub fn finish(&mut self, reason: Disconnect) {
        if self.finished {
            return;
        }
        self.finished = true;
        let push = disconnect_push(reason.code, reason.reason);
        let mut events = BytesMut::new();
        event(&mut events, None, &push_body(&push));
        if self.chunked {
            self.out
                .put_slice(format!("{:x}\r\n", events.len()).as_bytes());
            self.out.put_slice(&events);
            self.out.put_slice(b"\r\n");
            self.out.put_slice(LAST_CHUNK);
        } else {
            self.out.put_slice(&events);
        }
    }

    /// Renders the queued frames into one chunk (nothing is in flight; the
    /// queue is bounded, and so is the chunk).
    fn render(&mut self, frames: &mut FrameQueue, stats: &mut WriteStats) {
        let events: usize = frames.iter().map(|f| self.events.size_hint(f)).sum();
        // One allocation for the whole chunk: growing as events are added copies them again.
        self.out.reserve(SIZE_LINE_MAX + events + 2);
        if self.chunked {
            self.out.put_bytes(0, SIZE_LINE_MAX);
        }
        let start = self.out.len();
        stats.handed(frames.iter());
        for frame in std::mem::take(frames) {
            // An error reply refuses a stream before it starts (see
            // `sse::open`); later ones have no event.
            let _ = self.events.render(frame, &mut self.out);
        }
        if self.out.len() == start {
            self.clear();
            return;
        }
        self.written = start;
        if self.chunked {
            let size = format!("{:x}\r\n", self.out.len() - start);
            self.written = start - size.len();
            self.out[self.written..start].copy_from_slice(size.as_bytes());
            self.out.put_slice(b"\r\n");
        }
    }

    /// Frees the written bytes.
    fn clear(&mut self) {
        self.out = BytesMut::new();
        self.written = 0;
    }
}

impl writer::Wire for Wire {
    const TRANSPORT: Transport = Transport::Sse;

    fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        frames: &mut FrameQueue,
        stats: &mut WriteStats,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.written < self.out.len() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                stats.written(n);
                self.written += n;
                if self.written == self.out.len() {
                    self.clear();
                }
                continue;
            }
            if frames.is_empty() || self.finished {
                return Pin::new(&mut *io).poll_flush(cx);
            }
            self.render(frames, stats);
        }
    }

    fn frames_in_flight(&self) -> usize {
        // Frames leave the queue as they are rendered.
        0
    }
}

#[cfg(test)]
mod tests;
