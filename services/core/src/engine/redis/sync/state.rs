//! What a delivery worker knows of one channel: the last delivered position,
//! whether a gap fill is due, and the messages held back meanwhile (bounded).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::{MAX_PENDING, ORPHAN_AFTER};
use crate::engine::redis::envelope::Message;

/// One channel's delivery state, as its worker keeps it.
pub(super) struct ChannelState {
    /// Last delivered offset and its epoch; `None` until the start position arrives.
    pub(super) position: Option<(u64, Arc<str>)>,
    /// Waiting for a gap fill.
    pub(super) dirty: bool,
    /// Messages held until the start position arrives or a gap is filled
    /// (boxed: most channels never hold any, and a node has many channels).
    held: Option<Box<Held>>,
}

/// Messages a channel holds back, in arrival order, and since when.
struct Held {
    pending: VecDeque<Message>,
    since: Instant,
}

impl ChannelState {
    pub(super) fn new() -> ChannelState {
        ChannelState {
            position: None,
            dirty: false,
            held: None,
        }
    }

    pub(super) fn hold(&mut self, channel: &str, msg: Message) {
        let held = self.held.get_or_insert_with(|| {
            Box::new(Held {
                pending: VecDeque::new(),
                since: Instant::now(),
            })
        });
        if held.pending.len() == MAX_PENDING {
            // Publications among them are read back from the stream by the next gap fill.
            debug!(channel, "pending messages over the bound, oldest dropped");
            held.pending.pop_front();
        }
        held.pending.push_back(msg);
    }

    /// Takes the held messages.
    pub(super) fn take_held(&mut self) -> VecDeque<Message> {
        self.held.take().map(|h| h.pending).unwrap_or_default()
    }

    /// A channel that never got its start position and has waited too long for it.
    pub(super) fn is_orphan(&self) -> bool {
        self.position.is_none()
            && self
                .held
                .as_ref()
                .is_none_or(|h| h.since.elapsed() >= ORPHAN_AFTER)
    }

    pub(super) fn is_waiting(&self) -> bool {
        self.position.is_none() || self.dirty
    }
}
