//! One WebSocket's write state: turns queued frames into messages of the
//! connection's format (JSON text, or a length-delimited Protobuf reply in a
//! binary message), one frame per message, and writes up to a batch of them
//! (or 64 KiB) with one vectored write straight from the shared frames to the
//! socket it is given. A message per frame costs no system call more than
//! frames joined into one message would, and SDKs that dispatch the frames of
//! one message out of order with the next message's (centrifuge-js before
//! 5.8) see every push in order.
//! It keeps what a partial write left over, so any task may continue the
//! write: usually the flusher, the connection's own task when the socket is full.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use herald_core::metrics::labels::Transport;
use herald_core::protocol::Format;
use tokio::io::AsyncWrite;

use super::codec::{self, Kind, MAX_HEADER};
use crate::frame_queue::FrameQueue;
use crate::write_stats::WriteStats;
use crate::writer;

/// Bytes coalesced into one message at most (a single larger frame is still sent whole).
pub const MAX_COALESCED: usize = 64 * 1024;

/// Most pieces (a header and a frame each) handed to one `writev`.
const MAX_SLICES: usize = 256;

/// Pieces that fit the `writev` list kept on the stack (more take an allocation).
const FEW_SLICES: usize = 8;

/// The unfinished write of one connection.
pub struct Wire {
    batch: usize,
    format: Format,
    /// The write in progress: the first `frames` queued frames.
    message: Option<Message>,
    /// A control frame (pong, close) to write once the current message is out,
    /// and how much of it is written (boxed: rare, and every connection has the field).
    control: Option<Box<(Bytes, usize)>>,
}

/// Size and progress of the write in progress, headers included (sizes in
/// `u32`: every frame is bounded by the request body limits, far below 4 GiB).
struct Message {
    frames: u32,
    total: u32,
    written: u32,
}

impl Wire {
    /// A wire writing up to `batch` frames per vectored write, in `format`.
    pub fn new(batch: usize, format: Format) -> Wire {
        Wire {
            batch,
            format,
            message: None,
            control: None,
        }
    }

    /// Sends a control frame after the message in flight; a control frame
    /// still waiting is replaced (a pong answers the latest ping).
    pub fn push_control(&mut self, kind: Kind, payload: &[u8]) {
        let (header, len) = codec::header(kind, payload.len());
        let mut frame = Vec::with_capacity(len + payload.len());
        frame.extend_from_slice(&header[..len]);
        frame.extend_from_slice(payload);
        match self.control.as_deref() {
            Some((_, 0)) | None => self.control = Some(Box::new((Bytes::from(frame), 0))),
            Some(_) => {}
        }
    }

    /// Frames from the front of the queue that make the next write,
    /// encoded in the connection's format first where they are typed.
    fn next_message(&self, frames: &mut FrameQueue) -> Message {
        let format = self.format;
        let mut iter = frames.iter_mut().map(|frame| {
            frame.encode(format);
            let length = frame.bytes(format).len();
            codec::header_len(length) + length
        });
        let mut count = 1;
        let mut total = iter.next().unwrap_or(0);
        for next in iter {
            if count == self.batch || total + next > MAX_COALESCED {
                break;
            }
            total += next;
            count += 1;
        }
        Message {
            frames: count as u32,
            total: total as u32,
            written: 0,
        }
    }
}

impl writer::Wire for Wire {
    const TRANSPORT: Transport = Transport::WebSocket;

    fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        frames: &mut FrameQueue,
        stats: &mut WriteStats,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(message) = &mut self.message {
                let n = ready!(poll_write_pieces(
                    Pin::new(&mut *io),
                    cx,
                    frames,
                    message.frames as usize,
                    message.written as usize,
                    self.format
                ))?;
                stats.written(n);
                message.written += n as u32;
                if message.written == message.total {
                    frames.drain_front(message.frames as usize);
                    self.message = None;
                }
                continue;
            }
            if let Some((frame, written)) = self.control.as_deref_mut() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &frame[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
                if *written == frame.len() {
                    self.control = None;
                }
                continue;
            }
            if frames.is_empty() {
                // A TLS stream may hold encrypted bytes the socket did not
                // take yet (a plain socket holds none: this returns at once).
                return Pin::new(&mut *io).poll_flush(cx);
            }
            let message = self.next_message(frames);
            stats.handed(frames.iter().take(message.frames as usize));
            self.message = Some(message);
        }
    }

    fn frames_in_flight(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.frames as usize)
    }
}

/// The message kind of a format: JSON is text, Protobuf binary.
fn kind(format: Format) -> Kind {
    match format {
        Format::Json => Kind::Text,
        Format::Protobuf => Kind::Binary,
    }
}

/// One `writev` of the first `count` frames, each behind its message header,
/// less the first `skip` bytes.
fn poll_write_pieces<W: AsyncWrite>(
    io: Pin<&mut W>,
    cx: &mut Context<'_>,
    frames: &FrameQueue,
    count: usize,
    skip: usize,
    format: Format,
) -> Poll<io::Result<usize>> {
    let count = count.min(MAX_SLICES / 2);
    let kind = kind(format);
    let parts = frames.iter().take(count).map(|f| f.bytes(format));
    let written = if 2 * count <= FEW_SLICES {
        let headers = &mut [([0; MAX_HEADER], 0); FEW_SLICES / 2];
        let slices = &mut [IoSlice::new(&[]); FEW_SLICES];
        let filled = fill_slices(slices, headers, kind, parts, skip);
        ready!(io.poll_write_vectored(cx, &slices[..filled]))?
    } else {
        let headers = &mut vec![([0; MAX_HEADER], 0); count];
        let slices = &mut vec![IoSlice::new(&[]); 2 * count];
        let filled = fill_slices(slices, headers, kind, parts, skip);
        ready!(io.poll_write_vectored(cx, &slices[..filled]))?
    };
    if written == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    Poll::Ready(Ok(written))
}

/// Fills `slices` with each of `parts` behind its message header (made in
/// `headers`), leaving out the first `skip` bytes; returns how many slices
/// were filled.
fn fill_slices<'a>(
    slices: &mut [IoSlice<'a>],
    headers: &'a mut [([u8; MAX_HEADER], usize)],
    kind: Kind,
    parts: impl Iterator<Item = &'a [u8]>,
    mut skip: usize,
) -> usize {
    let mut count = 0;
    for (header, part) in headers.iter_mut().zip(parts) {
        *header = codec::header(kind, part.len());
        let header: &'a ([u8; MAX_HEADER], usize) = header;
        let header = &header.0[..header.1];
        for piece in [header, part] {
            if skip >= piece.len() {
                skip -= piece.len();
                continue;
            }
            slices[count] = IoSlice::new(&piece[skip..]);
            skip = 0;
            count += 1;
        }
        if count + 2 > slices.len() {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests;
