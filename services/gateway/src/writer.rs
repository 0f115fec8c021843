//! A streaming connection's writer (WebSocket, SSE): owns the socket and the
//! connection's write state, a [`Wire`] that turns frames into the
//! transport's bytes. A flusher runs it (see [`crate::flusher`]); while the
//! socket is full the connection's task writes instead. It takes the queued
//! frames out of the outbox, writes them with the outbox unlocked (no
//! system call while a producer could wait) and puts back what the socket did
//! not take. The connection's task reads through it too. The socket is a
//! plain `TcpStream` (written with `sendmsg` on its descriptor) or a TLS
//! stream ([`crate::ws::tls`]); the writer is generic over both and over the
//! wire, so neither pays for the others.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use herald_core::metrics::labels::Transport;
use herald_core::metrics::TransportMetrics;
use herald_core::protocol::Disconnect;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::flusher::{Flush, FlushStats, Shard};
use crate::frame_queue::FrameQueue;
use crate::outbox::Outbox;
use crate::write_stats::WriteStats;

/// One connection's write state in its transport's framing: what a
/// [`Writer`] runs. It keeps what a partial write left over, so any task may
/// continue the write.
pub trait Wire: Send + 'static {
    /// The transport whose metrics count the writes.
    const TRANSPORT: Transport;

    /// Writes to `io` until `frames` is empty, nothing is in flight and `io`
    /// is flushed (`Ready(Ok)`), or the socket is full (`Pending`, progress
    /// kept). Written frames leave `frames`; writes are counted in `stats`.
    fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        frames: &mut FrameQueue,
        stats: &mut WriteStats,
    ) -> Poll<io::Result<()>>;

    /// Queued frames that belong to the write in progress (they must go out whole).
    fn frames_in_flight(&self) -> usize;
}

/// A socket a [`Writer`] writes to and the connection's task reads from,
/// both through a shared reference.
pub trait Conn: Send + Sync + 'static {
    /// What one write call writes through.
    type Write<'a>: AsyncWrite + Unpin
    where
        Self: 'a;

    /// The write side, for one call of the writer.
    fn write_half(&self) -> Self::Write<'_>;

    /// Reads decrypted (or plain) bytes.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>;
}

impl Conn for TcpStream {
    type Write<'a> = Socket<'a>;

    fn write_half(&self) -> Socket<'_> {
        Socket(self)
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A connection's socket and write side.
pub struct Writer<S, W> {
    socket: S,
    outbox: Arc<Outbox>,
    wire: Mutex<W>,
}

impl<S: Conn, W: Wire> Writer<S, W> {
    /// Takes over writing `outbox`'s frames to `socket` through `wire`, run by the flusher `shard`.
    pub fn attach(socket: S, outbox: Arc<Outbox>, shard: Arc<Shard>, wire: W) -> Arc<Writer<S, W>> {
        let writer = Arc::new(Writer {
            socket,
            outbox: outbox.clone(),
            wire: Mutex::new(wire),
        });
        let flush: Arc<dyn Flush> = writer.clone();
        outbox.attach(Arc::downgrade(&flush), shard);
        writer
    }

    /// Hands the outbox back to the connection's task; the socket closes
    /// once the last reference (the task's, a flusher's) is gone.
    pub fn detach(&self) {
        self.outbox.detach();
    }

    /// Writes from the connection's task until everything queued is out,
    /// counting into `metrics` (through counts of its own for this call: the
    /// task writes only while the socket is full, the flushers otherwise).
    pub fn poll_flush(
        &self,
        cx: &mut Context<'_>,
        metrics: &TransportMetrics,
    ) -> Poll<io::Result<()>> {
        let mut wire = self.wire.lock().expect("poisoned");
        let mut stats = WriteStats::new(metrics);
        loop {
            let mut frames = self.outbox.take_for_task();
            match wire.poll_flush(&mut self.socket.write_half(), cx, &mut frames, &mut stats) {
                Poll::Ready(Ok(())) => {
                    if self.outbox.task_wrote_all() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending => {
                    self.outbox.put_back(frames, true);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    self.outbox.written();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// Changes the wire's state (a control frame to write after the frames in
    /// flight), then hands the writing to the connection's task.
    pub fn push_control(&self, push: impl FnOnce(&mut W)) {
        push(&mut self.wire.lock().expect("poisoned"));
        self.outbox.hand_to_task();
    }

    /// Drops the frames that have not started to go out (a message partly
    /// written is finished, or the stream would be corrupt).
    pub fn drop_unsent(&self) {
        let wire = self.wire.lock().expect("poisoned");
        self.outbox.drop_queued(wire.frames_in_flight());
    }

    /// Reads from the socket (the connection's task).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buf)
    }
}

impl<S: Conn, W: Wire> Flush for Writer<S, W> {
    fn flush_now(&self, stats: &mut FlushStats) {
        let stats = stats.of(W::TRANSPORT);
        let mut wire = self.wire.lock().expect("poisoned");
        let Some(mut frames) = self.outbox.take_for_flusher() else {
            return;
        };
        let cx = &mut Context::from_waker(Waker::noop());
        match wire.poll_flush(&mut self.socket.write_half(), cx, &mut frames, stats) {
            Poll::Ready(Ok(())) => self.outbox.written(),
            Poll::Pending => self.outbox.put_back(frames, true),
            Poll::Ready(Err(_)) => {
                self.outbox.written();
                self.outbox.close(Disconnect::WRITE_ERROR);
            }
        }
    }
}

/// Writes to a shared socket: straight to the socket while it takes them,
/// without consulting the runtime's readiness state; only a full socket
/// registers for writability.
pub struct Socket<'a>(&'a TcpStream);

impl Socket<'_> {
    fn sendmsg(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // A system call of its own rather than libc's `sendmsg`, which wraps
        // every call in thread-cancellation bookkeeping.
        rustix::net::sendmsg(
            self.0,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )
        .map_err(io::Error::from)
    }

    fn poll_send(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.sendmsg(bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            // Clears the runtime's readiness when the socket is still full.
            match self.0.try_io(Interest::WRITABLE, || self.sendmsg(bufs)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for Socket<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, &[IoSlice::new(buf)])
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The read side the connection's task holds.
pub struct ReadHalf<S, W>(pub Arc<Writer<S, W>>);

impl<S: Conn, W: Wire> AsyncRead for ReadHalf<S, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

/// When a connection's task gives up writing to a full socket: the write
/// timeout runs from when the task began writing, and is forgotten once the
/// flushers write again.
#[derive(Debug, Default)]
pub(crate) struct WriteDeadline(Option<Instant>);

impl WriteDeadline {
    /// The task's next wake-up: `session` (the session's timers), or the
    /// write timeout if sooner while the task writes.
    pub(crate) fn next(
        &mut self,
        task_writes: bool,
        timeout: Duration,
        session: Instant,
    ) -> Instant {
        if !task_writes {
            self.0 = None;
        } else if self.0.is_none() {
            self.0 = Some(Instant::now() + timeout);
        }
        self.0.map_or(session, |deadline| deadline.min(session))
    }

    /// Whether the write timeout has passed.
    pub(crate) fn passed(&self) -> bool {
        self.0.is_some_and(|deadline| deadline <= Instant::now())
    }
}
