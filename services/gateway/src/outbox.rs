//! One connection's outgoing side, shared by everything that sends to it (hub
//! fan-out, session replies, cluster control): a bounded queue of typed
//! [`Frame`]s, the reason the connection is closing, the subscribe
//! [`hold::HoldBack`] and the control [`mailbox::Mailbox`], and who must be
//! woken when frames arrive: the connection's task, or the flusher that runs
//! the connection's writer. It knows nothing of sockets; writers take frames
//! out and report back (see [`crate::writer`]).
//!
//! Replies to the client's own commands do not count against the queue's
//! capacity (a frame of many commands is not a slow client); they have a
//! bound of their own, [`MAX_QUEUED_REPLIES`].

pub mod hold;
pub mod mailbox;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use herald_core::control;
use herald_core::protocol::Disconnect;
use tokio::sync::Notify;

use crate::flusher::{Flush, Shard};
use crate::frame::{ChannelPush, Frame};
use crate::frame_queue::FrameQueue;
use hold::{HoldBack, Offer};
use mailbox::Mailbox;

/// Replies a connection may leave unread before it is closed as slow: well
/// above what one frame's commands produce (see the session's cap on
/// commands per frame), so only a client that keeps sending commands without
/// reading the replies reaches it.
pub const MAX_QUEUED_REPLIES: usize = 4096;

/// Whether a transport writes what was queued before the server closes the
/// connection with `reason` (then the close itself). Replies queued before an
/// error are still owed to the client; after a slow or insufficient-state
/// close, queued frames are stale (the client will recover them). Every
/// transport follows this one rule.
pub fn flushes_before_close(reason: Disconnect) -> bool {
    reason != Disconnect::SLOW && reason != Disconnect::INSUFFICIENT_STATE
}

/// The sending half every producer writes to.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Frames a writer took out and has not finished writing: they still
    /// count against the queue (and replies among them stay replies).
    in_flight: AtomicU32,
    /// The flusher that runs the connection's writer, once one is attached.
    shard: OnceLock<Arc<Shard>>,
    capacity: usize,
    closing: OnceLock<Disconnect>,
    /// Wakes the connection's task: commands, closing, and frames when it writes them.
    wake: Notify,
    hold: HoldBack,
    mailbox: Mailbox,
}

/// Queued frames and who writes them.
#[derive(Default)]
struct Queue {
    frames: FrameQueue,
    /// At least as many as the replies among the queued and in-flight frames
    /// (clamped to their number before each use): room they take is not the client's lag.
    replies: u32,
    /// The most frames queued and in flight at once.
    high_water: u32,
    writer: Writer,
}

/// Who writes the queued frames.
#[derive(Default)]
enum Writer {
    /// The connection's task, woken through the outbox.
    #[default]
    Task,
    /// A writer that a flusher runs.
    Flusher { writer: Weak<dyn Flush>, turn: Turn },
}

/// Whose turn it is to write, for a writer that a flusher runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Nothing scheduled: the next frame rings the bell.
    Idle,
    /// The bell rang; the flusher will come.
    Scheduled,
    /// The socket was full (or a control frame waits): the connection's task writes.
    Task,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("frames", &self.frames.len())
            .field("replies", &self.replies)
            .finish()
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue::default()),
            in_flight: AtomicU32::new(0),
            shard: OnceLock::new(),
            capacity,
            closing: OnceLock::new(),
            wake: Notify::new(),
            hold: HoldBack::default(),
            mailbox: Mailbox::default(),
        })
    }

    /// Queues a frame; a full queue closes the connection as slow. Once the
    /// connection is closing nothing more is queued (a client told to recover
    /// must not see what came after the loss).
    pub fn send(&self, frame: Frame) -> bool {
        self.push(frame, false)
    }

    /// Queues the reply to one of the client's own commands: it takes no room
    /// from the frames the connection receives (see [`MAX_QUEUED_REPLIES`]).
    pub fn reply(&self, frame: Frame) -> bool {
        self.push(frame, true)
    }

    fn push(&self, frame: Frame, reply: bool) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        let mut queue = self.queue.lock().expect("poisoned");
        let len = queue.frames.len() + self.in_flight.load(Ordering::Relaxed) as usize;
        // Replies that left since the last look are gone from the allowance too.
        queue.replies = queue.replies.min(len as u32);
        let full = if reply {
            queue.replies as usize >= MAX_QUEUED_REPLIES
        } else {
            len >= self.capacity + queue.replies as usize
        };
        if full {
            drop(queue);
            self.close(Disconnect::SLOW);
            return false;
        }
        queue.replies += u32::from(reply);
        queue.frames.push_back(frame);
        queue.high_water = queue.high_water.max(len as u32 + 1);
        let schedule = match &mut queue.writer {
            Writer::Task => {
                drop(queue);
                self.wake.notify_one();
                return true;
            }
            Writer::Flusher { writer, turn } if *turn == Turn::Idle => {
                *turn = Turn::Scheduled;
                writer.upgrade()
            }
            Writer::Flusher { .. } => None,
        };
        drop(queue);
        if let (Some(writer), Some(shard)) = (schedule, self.shard.get()) {
            shard.schedule(writer);
        }
        true
    }

    /// Queues a channel push (publication, join, leave), unless the
    /// subscribe hold-back keeps or skips it.
    pub fn send_channel(&self, push: &Arc<ChannelPush>) -> bool {
        match self.hold.offer(push, self.capacity) {
            Offer::Pass => self.send(Frame::Channel(push.clone())),
            Offer::Kept | Offer::Skip => true,
            Offer::Overflow => {
                self.close(Disconnect::SLOW);
                false
            }
        }
    }

    /// Starts holding back the channel's frames.
    pub fn hold(&self, channel: &Arc<str>) {
        self.hold.hold(channel);
    }

    /// Queues `reply`, then every held frame of `channels` newer than the offset
    /// paired with it (see [`HoldBack::release`]).
    pub fn release(&self, reply: Option<Frame>, channels: &[(Arc<str>, u64)]) {
        let first = || {
            if let Some(reply) = reply {
                self.reply(reply);
            }
        };
        self.hold.release(channels, first, |push| {
            self.send(Frame::Channel(push));
        });
    }

    /// Stops looking at a channel's frames (the session left it).
    pub fn forget(&self, channel: &str) {
        self.hold.forget(channel);
    }

    /// Takes every queued frame, oldest first (for a connection's task that writes them itself).
    pub fn take_frames(&self) -> FrameQueue {
        let mut queue = self.queue.lock().expect("poisoned");
        queue.replies = 0;
        std::mem::take(&mut queue.frames)
    }

    /// From now on queued frames are written by `writer`, which the flusher `shard` runs.
    pub fn attach(&self, writer: Weak<dyn Flush>, shard: Arc<Shard>) {
        let shard = self.shard.get_or_init(|| shard);
        let mut queue = self.queue.lock().expect("poisoned");
        let pending = !queue.frames.is_empty();
        let turn = if pending { Turn::Scheduled } else { Turn::Idle };
        // Under the lock: the flusher's first look must find the turn set below.
        if let Some(writer) = pending.then(|| writer.upgrade()).flatten() {
            shard.schedule(writer);
        }
        queue.writer = Writer::Flusher { writer, turn };
    }

    /// Forgets the writer: frames only wake the connection's task.
    pub fn detach(&self) {
        self.queue.lock().expect("poisoned").writer = Writer::Task;
    }

    /// The flusher's turn: the queued frames, oldest first (they still
    /// count against the queue while being written: what is not written goes
    /// back with [`Outbox::put_back`]). `None` when the connection's task writes.
    pub fn take_for_flusher(&self) -> Option<FrameQueue> {
        let mut queue = self.queue.lock().expect("poisoned");
        if let Writer::Flusher { turn, .. } = &mut queue.writer {
            if *turn == Turn::Task {
                return None;
            }
            *turn = Turn::Idle;
        }
        Some(self.take(&mut queue))
    }

    /// The connection task's turn: the queued frames, oldest first.
    pub fn take_for_task(&self) -> FrameQueue {
        self.take(&mut self.queue.lock().expect("poisoned"))
    }

    fn take(&self, queue: &mut Queue) -> FrameQueue {
        let frames = std::mem::take(&mut queue.frames);
        self.in_flight.store(frames.len() as u32, Ordering::Relaxed);
        frames
    }

    /// A writer wrote everything it took.
    pub fn written(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
    }

    /// Puts what a writer took and did not write back in front of the queue.
    /// A `blocked` writer (full socket) hands the writing to the connection's task.
    pub fn put_back(&self, unwritten: FrameQueue, blocked: bool) {
        let mut queue = self.queue.lock().expect("poisoned");
        self.in_flight.store(0, Ordering::Relaxed);
        queue.frames.prepend(unwritten);
        if !blocked {
            return;
        }
        if let Writer::Flusher { turn, .. } = &mut queue.writer {
            if *turn != Turn::Task {
                *turn = Turn::Task;
                drop(queue);
                self.wake.notify_one();
            }
        }
    }

    /// The connection's task wrote everything it took: true when nothing new
    /// was queued meanwhile (then the flusher writes again).
    pub fn task_wrote_all(&self) -> bool {
        self.in_flight.store(0, Ordering::Relaxed);
        let mut queue = self.queue.lock().expect("poisoned");
        if !queue.frames.is_empty() {
            return false;
        }
        if let Writer::Flusher { turn, .. } = &mut queue.writer {
            if *turn == Turn::Task {
                *turn = Turn::Idle;
            }
        }
        true
    }

    /// Whether the connection's task has to write (full socket, waiting control frame).
    pub fn task_writes(&self) -> bool {
        let queue = self.queue.lock().expect("poisoned");
        matches!(
            queue.writer,
            Writer::Flusher {
                turn: Turn::Task,
                ..
            }
        )
    }

    /// Hands the writing to the connection's task (a control frame waits).
    pub fn hand_to_task(&self) {
        let mut queue = self.queue.lock().expect("poisoned");
        if let Writer::Flusher { turn, .. } = &mut queue.writer {
            *turn = Turn::Task;
        }
    }

    /// Drops the queued frames but the first `keep` (a message partly
    /// written must be finished, or the stream would be corrupt).
    pub fn drop_queued(&self, keep: usize) {
        let mut queue = self.queue.lock().expect("poisoned");
        queue.frames.truncate(keep);
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
        self.queue.lock().expect("poisoned").high_water as usize
    }

    /// Why the connection is closing, once it is.
    pub fn closing(&self) -> Option<Disconnect> {
        self.closing.get().copied()
    }

    /// Hands a control command to the session; a full mailbox closes the connection as slow.
    pub fn push_control(&self, command: control::Command) {
        if self.mailbox.put(command) {
            self.wake.notify_one();
        } else {
            self.close(Disconnect::SLOW);
        }
    }

    /// Takes the next pending control command.
    pub fn pop_control(&self) -> Option<control::Command> {
        self.mailbox.take()
    }

    /// Resolves when frames, a control command or a close request may be waiting.
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests;
