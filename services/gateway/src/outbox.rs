//! One connection's outgoing side: a bounded queue of encoded frames, the
//! reason it is closing, pending control commands, and the per-channel buffer
//! that holds publications back while a subscribe reply is being prepared
//! (so recovered and live publications reach the client in order, once).
//! An idle connection's queues allocate nothing; one `Notify` wakes the
//! connection's task for commands and closing, and for frames unless a
//! WebSocket [`Wire`] is attached: then frames are written by a flusher (see
//! [`crate::flusher`]) and the task writes only while the socket is full.
//! Replies to the client's own commands do not count against the queue's
//! capacity (a frame of many commands is not a slow client); they have a
//! bound of their own, [`MAX_QUEUED_REPLIES`].

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use herald_core::control;
use herald_core::metrics::TransportMetrics;
use herald_core::protocol::Disconnect;
use tokio::io::ReadBuf;
use tokio::sync::Notify;

use crate::flusher::Shard;
use crate::frame_queue::FrameQueue;
use crate::small_map::SmallMap;
use crate::write_stats::WriteStats;
use crate::ws::{Kind, Wire};

/// The sending half every producer (hub fan-out, session replies) writes to.
#[derive(Debug)]
pub struct Outbox {
    frames: Mutex<Queue>,
    me: Weak<Outbox>,
    flusher: OnceLock<Arc<Shard>>,
    capacity: usize,
    closing: OnceLock<Disconnect>,
    wake: Notify,
    syncing: AtomicBool,
    held: Mutex<SmallMap<Sync>>,
    control: Mutex<VecDeque<control::Command>>,
    /// Whether `control` may hold a command (spares the lock on every wake-up).
    has_control: AtomicBool,
}

/// Queued frames and, for a WebSocket, the socket they are written to.
#[derive(Default)]
struct Queue {
    frames: FrameQueue,
    direct: Option<Direct>,
    /// At least as many as the replies among `frames` (clamped to their
    /// number whenever frames leave): room they take is not the client's lag.
    replies: u32,
    /// The most frames `frames` ever held.
    high_water: u32,
}

impl Queue {
    /// After frames left the queue: the replies among them are gone too.
    fn shrunk(&mut self) {
        self.replies = self.replies.min(self.frames.len() as u32);
    }
}

/// The write side of a connection whose frames a flusher writes.
struct Direct {
    wire: Wire,
    /// The outbox is on the flusher's dirty list.
    scheduled: bool,
    /// The socket was full (or a control frame waits): the connection's task writes.
    task_writes: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("frames", &self.frames.len())
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

/// Who must act after a frame was queued.
enum Wake {
    Task,
    Flusher,
    Nobody,
}

/// A channel whose frames need a look before they are queued.
#[derive(Debug)]
enum Sync {
    /// The subscribe reply is being prepared: keep frames (with offsets) back.
    Hold(Vec<(u64, Bytes)>),
    /// The reply covered publications up to this offset: an engine that lags
    /// behind Redis may still deliver some of them; drop those.
    Covered(u64),
}

/// Control commands a session keeps before it stalls its queue.
const MAX_PENDING_CONTROL: usize = 64;

/// Replies a connection may leave unread before it is closed as slow: well
/// above what one frame's commands produce (see the session's cap on
/// commands per frame), so only a client that keeps sending commands without
/// reading the replies reaches it.
pub const MAX_QUEUED_REPLIES: usize = 4096;

impl Outbox {
    /// A new outbox holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new_cyclic(|me| Outbox {
            frames: Mutex::new(Queue::default()),
            me: me.clone(),
            flusher: OnceLock::new(),
            capacity,
            closing: OnceLock::new(),
            wake: Notify::new(),
            syncing: AtomicBool::new(false),
            held: Mutex::new(SmallMap::default()),
            control: Mutex::new(VecDeque::new()),
            has_control: AtomicBool::new(false),
        })
    }

    /// Queues a frame; a full queue closes the connection as slow. Once the
    /// connection is closing nothing more is queued (a client told to recover
    /// must not see what came after the loss).
    pub fn send(&self, frame: Bytes) -> bool {
        self.push(frame, false)
    }

    /// Queues the reply to one of the client's own commands: it takes no room
    /// from the frames the connection receives (see [`MAX_QUEUED_REPLIES`]).
    pub fn reply(&self, frame: Bytes) -> bool {
        self.push(frame, true)
    }

    fn push(&self, frame: Bytes, reply: bool) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        let mut queue = self.frames.lock().expect("poisoned");
        let full = if reply {
            queue.replies as usize >= MAX_QUEUED_REPLIES
        } else {
            queue.frames.len() >= self.capacity + queue.replies as usize
        };
        if full {
            drop(queue);
            self.close(Disconnect::SLOW);
            return false;
        }
        queue.replies += u32::from(reply);
        queue.frames.push_back(frame);
        queue.high_water = queue.high_water.max(queue.frames.len() as u32);
        let wake = match &mut queue.direct {
            None => Wake::Task,
            Some(d) if d.scheduled || d.task_writes => Wake::Nobody,
            Some(d) => {
                d.scheduled = true;
                Wake::Flusher
            }
        };
        drop(queue);
        match wake {
            Wake::Task => self.wake.notify_one(),
            Wake::Flusher => self.schedule(),
            Wake::Nobody => {}
        }
        true
    }

    fn schedule(&self) {
        if let (Some(shard), Some(me)) = (self.flusher.get(), self.me.upgrade()) {
            shard.schedule(me);
        }
    }

    /// Takes every queued frame, oldest first. Only for outboxes without a wire.
    pub fn take_frames(&self) -> FrameQueue {
        let mut queue = self.frames.lock().expect("poisoned");
        queue.replies = 0;
        std::mem::take(&mut queue.frames)
    }

    /// From now on frames are written to `wire` by the flusher `shard`.
    pub fn attach(&self, wire: Wire, shard: Arc<Shard>) {
        let _ = self.flusher.set(shard);
        let mut queue = self.frames.lock().expect("poisoned");
        let pending = !queue.frames.is_empty();
        queue.direct = Some(Direct {
            wire,
            scheduled: pending,
            task_writes: false,
        });
        drop(queue);
        if pending {
            self.schedule();
        }
    }

    /// Drops the wire and with it the socket.
    pub fn detach(&self) {
        self.frames.lock().expect("poisoned").direct = None;
    }

    /// Writes what is queued without waiting (the flusher's call, counting in
    /// its `stats`): a full socket hands the rest to the connection's task.
    pub fn flush_now(&self, stats: &mut WriteStats) {
        let mut queue = self.frames.lock().expect("poisoned");
        let Queue {
            frames,
            direct,
            replies,
            ..
        } = &mut *queue;
        let Some(d) = direct else { return };
        d.scheduled = false;
        if d.task_writes {
            return;
        }
        let cx = &mut Context::from_waker(Waker::noop());
        let flushed = d.wire.poll_flush(cx, frames, stats);
        *replies = (*replies).min(frames.len() as u32);
        match flushed {
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                d.task_writes = true;
                drop(queue);
                self.wake.notify_one();
            }
            Poll::Ready(Err(_)) => {
                drop(queue);
                self.close(Disconnect::WRITE_ERROR);
            }
        }
    }

    /// Reads from the attached WebSocket (end of stream once detached).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut queue = self.frames.lock().expect("poisoned");
        match &mut queue.direct {
            Some(d) => d.wire.poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Whether the connection's task has to write (see [`Outbox::poll_flush`]).
    pub fn task_writes(&self) -> bool {
        let queue = self.frames.lock().expect("poisoned");
        queue.direct.as_ref().is_some_and(|d| d.task_writes)
    }

    /// Writes from the connection's task until everything queued is out,
    /// counting into `metrics` (through counts of its own for this call: the
    /// task writes only while the socket is full, the flushers otherwise).
    pub fn poll_flush(
        &self,
        cx: &mut Context<'_>,
        metrics: &TransportMetrics,
    ) -> Poll<io::Result<()>> {
        let mut queue = self.frames.lock().expect("poisoned");
        let Queue { frames, direct, .. } = &mut *queue;
        let Some(d) = direct else {
            return Poll::Ready(Ok(()));
        };
        let mut stats = WriteStats::new(metrics);
        let flushed = d.wire.poll_flush(cx, frames, &mut stats);
        d.task_writes = flushed.is_pending();
        queue.shrunk();
        flushed
    }

    /// Queues a WebSocket control frame for the connection's task to write.
    pub fn push_wire_control(&self, kind: Kind, payload: &[u8]) {
        let mut queue = self.frames.lock().expect("poisoned");
        if let Some(d) = &mut queue.direct {
            d.wire.push_control(kind, payload);
            d.task_writes = true;
        }
    }

    /// Drops queued frames that have not started to go out (a message
    /// partly written is finished, or the stream would be corrupt).
    pub fn drop_unsent(&self) {
        let mut queue = self.frames.lock().expect("poisoned");
        let keep = queue
            .direct
            .as_ref()
            .map_or(0, |d| d.wire.frames_in_flight());
        queue.frames.truncate(keep);
        queue.shrunk();
    }

    /// Queues a channel frame (publication, join, leave), or holds it while the
    /// channel's subscribe reply is being prepared. `offset` is 0 for frames without one.
    pub fn send_channel(&self, channel: &str, offset: u64, frame: &Bytes) -> bool {
        if self.syncing.load(Ordering::Acquire) {
            let mut held = self.held.lock().expect("poisoned");
            match held.get_mut(channel) {
                Some(Sync::Hold(buffer)) => {
                    if buffer.len() >= self.capacity {
                        drop(held);
                        self.close(Disconnect::SLOW);
                        return false;
                    }
                    buffer.push((offset, frame.clone()));
                    return true;
                }
                Some(Sync::Covered(covered)) if offset != 0 => {
                    if offset <= *covered {
                        return true;
                    }
                    held.remove(channel);
                    self.syncing.store(!held.is_empty(), Ordering::Release);
                }
                _ => {}
            }
        }
        self.send(frame.clone())
    }

    /// Starts holding back the channel's frames.
    pub fn hold(&self, channel: &Arc<str>) {
        let mut held = self.held.lock().expect("poisoned");
        held.insert(channel.clone(), Sync::Hold(Vec::new()));
        self.syncing.store(true, Ordering::Release);
    }

    /// Queues `reply`, then every held frame of `channels` newer than the offset
    /// paired with it (frames without offset always pass), and stops holding them.
    /// Later frames up to that offset are dropped until a newer one arrives.
    pub fn release(&self, reply: Option<Bytes>, channels: &[(Arc<str>, u64)]) {
        let mut held = self.held.lock().expect("poisoned");
        if let Some(reply) = reply {
            self.reply(reply);
        }
        for (channel, delivered) in channels {
            let mut covered = *delivered;
            if let Some(Sync::Hold(frames)) = held.remove(channel) {
                for (offset, frame) in frames {
                    if offset == 0 || offset > covered {
                        covered = covered.max(offset);
                        self.send(frame);
                    }
                }
            }
            if covered > 0 && covered != u64::MAX {
                held.insert(channel.clone(), Sync::Covered(covered));
            }
        }
        self.syncing.store(!held.is_empty(), Ordering::Release);
    }

    /// Stops looking at a channel's frames (the session left it).
    pub fn forget(&self, channel: &str) {
        let mut held = self.held.lock().expect("poisoned");
        if held.remove(channel).is_some() {
            self.syncing.store(!held.is_empty(), Ordering::Release);
        }
    }

    /// Asks the connection to close; the first reason wins (true when it is this one).
    pub fn close(&self, reason: Disconnect) -> bool {
        let first = self.closing.set(reason).is_ok();
        if first {
            self.wake.notify_one();
        }
        first
    }

    /// The most frames the queue held at once so far.
    pub fn high_water(&self) -> usize {
        self.frames.lock().expect("poisoned").high_water as usize
    }

    /// Why the connection is closing, once it is.
    pub fn closing(&self) -> Option<Disconnect> {
        self.closing.get().copied()
    }

    /// Hands a control command to the session.
    pub fn push_control(&self, command: control::Command) {
        let mut queue = self.control.lock().expect("poisoned");
        if queue.len() >= MAX_PENDING_CONTROL {
            drop(queue);
            self.close(Disconnect::SLOW);
            return;
        }
        queue.push_back(command);
        self.has_control.store(true, Ordering::Release);
        drop(queue);
        self.wake.notify_one();
    }

    /// Takes the next pending control command.
    pub fn pop_control(&self) -> Option<control::Command> {
        if !self.has_control.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.control.lock().expect("poisoned");
        let command = queue.pop_front();
        if queue.is_empty() {
            self.has_control.store(false, Ordering::Release);
        }
        command
    }

    /// Resolves when frames, a control command or a close request may be waiting.
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests;
