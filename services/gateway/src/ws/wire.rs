//! One WebSocket's write state: turns queued frames into text messages
//! (newline-joined, up to a batch or 64 KiB each) and writes each with one
//! vectored write straight from the shared frames to the socket it is given.
//! It keeps what a partial write left over, so any task may continue the
//! write: usually the flusher, the connection's own task when the socket is full.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::codec::{self, Kind, MAX_HEADER};
use crate::frame::Frame;
use crate::frame_queue::FrameQueue;
use crate::write_stats::WriteStats;

/// Bytes coalesced into one message at most (a single larger frame is still sent whole).
pub const MAX_COALESCED: usize = 64 * 1024;

/// Most pieces (header, frames, separators) handed to one `writev`.
const MAX_SLICES: usize = 256;

/// Pieces that fit the `writev` list kept on the stack (more take an allocation).
const FEW_SLICES: usize = 8;

/// The unfinished message of one connection.
pub struct Wire {
    batch: usize,
    /// The message being written: its first `frames` queued frames.
    message: Option<Message>,
    /// A control frame (pong, close) to write once the current message is out,
    /// and how much of it is written (boxed: rare, and every connection has the field).
    control: Option<Box<(Bytes, usize)>>,
}

/// Header and progress of the message being written (sizes in `u32`: every
/// frame is bounded by the request body limits, far below 4 GiB).
struct Message {
    frames: u32,
    total: u32,
    written: u32,
    header_len: u8,
    header: [u8; MAX_HEADER],
}

impl Wire {
    /// A wire coalescing up to `batch` frames per message.
    pub fn new(batch: usize) -> Wire {
        Wire {
            batch,
            message: None,
            control: None,
        }
    }

    /// Queued frames that belong to the message being written (they must go out whole).
    pub fn frames_in_flight(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.frames as usize)
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

    /// Writes to `io` until `frames` is empty, nothing is in flight and `io`
    /// is flushed (`Ready(Ok)`), or the socket is full (`Pending`, progress kept).
    /// Written frames leave `frames`; messages and writes are counted in `stats`.
    pub fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        frames: &mut FrameQueue,
        stats: &mut WriteStats,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(message) = &mut self.message {
                let header = &message.header[..usize::from(message.header_len)];
                let n = ready!(poll_write_pieces(
                    Pin::new(&mut *io),
                    cx,
                    header,
                    frames,
                    message.frames as usize,
                    message.written as usize
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

    /// Frames from the front of the queue that make the next message,
    /// encoded as JSON first where they are typed.
    fn next_message(&self, frames: &mut FrameQueue) -> Message {
        let mut iter = frames.iter_mut().map(|frame| {
            frame.encode_json();
            frame.json().len()
        });
        let mut count = 1;
        let mut length = iter.next().unwrap_or(0);
        for next in iter {
            if count == self.batch || length + 1 + next > MAX_COALESCED {
                break;
            }
            length += 1 + next;
            count += 1;
        }
        let (header, header_len) = codec::header(Kind::Text, length);
        Message {
            frames: count as u32,
            total: (header_len + length) as u32,
            written: 0,
            header_len: header_len as u8,
            header,
        }
    }
}

/// One `writev` of the header and the first `count` frames newline-joined,
/// less the first `skip` bytes.
fn poll_write_pieces<W: AsyncWrite>(
    io: Pin<&mut W>,
    cx: &mut Context<'_>,
    header: &[u8],
    frames: &FrameQueue,
    count: usize,
    skip: usize,
) -> Poll<io::Result<usize>> {
    let pieces = (1 + 2 * count).min(MAX_SLICES);
    let parts = frames.iter().take(count).map(Frame::json);
    let written = if pieces <= FEW_SLICES {
        let slices = &mut [IoSlice::new(&[]); FEW_SLICES];
        let filled = fill_slices(slices, header, parts, skip);
        ready!(io.poll_write_vectored(cx, &slices[..filled]))?
    } else {
        let slices = &mut vec![IoSlice::new(&[]); pieces];
        let filled = fill_slices(slices, header, parts, skip);
        ready!(io.poll_write_vectored(cx, &slices[..filled]))?
    };
    if written == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    Poll::Ready(Ok(written))
}

/// Fills `slices` with the header and the newline-joined `parts`, leaving out
/// the first `skip` bytes; returns how many slices were filled.
fn fill_slices<'a>(
    slices: &mut [IoSlice<'a>],
    header: &'a [u8],
    parts: impl Iterator<Item = &'a [u8]>,
    mut skip: usize,
) -> usize {
    let pieces = std::iter::once(header).chain(
        parts
            .enumerate()
            .flat_map(|(i, p)| [if i == 0 { &b""[..] } else { b"\n" }, p]),
    );
    let mut count = 0;
    for piece in pieces {
        if skip >= piece.len() {
            skip -= piece.len();
            continue;
        }
        slices[count] = IoSlice::new(&piece[skip..]);
        skip = 0;
        count += 1;
        if count == slices.len() {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests;
