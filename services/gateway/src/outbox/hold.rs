//! The subscribe hold-back: while a subscribe reply (with recovered
//! publications) is being prepared, live frames of that channel wait here, so
//! the client gets the reply, then the recovered, then the live publications,
//! each once. It decides what passes; the outbox does the queueing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::frame::ChannelPush;
use crate::small_map::SmallMap;

/// Channels whose frames need a look before they are queued.
#[derive(Debug, Default)]
pub struct HoldBack {
    channels: Mutex<SmallMap<Held>>,
    /// Whether `channels` may hold anything (spares the lock on every frame).
    active: AtomicBool,
}

/// What is known of one channel.
#[derive(Debug)]
enum Held {
    /// The subscribe reply is being prepared: keep pushes back.
    Waiting(Vec<Arc<ChannelPush>>),
    /// The reply covered publications up to this offset: an engine that lags
    /// behind Redis may still deliver some of them; drop those.
    Covered(u64),
}

/// What to do with a channel frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Pass,
    /// Kept back until the reply is released.
    Kept,
    /// Already covered by the reply: drop it.
    Skip,
    /// More frames waiting than the queue may hold: the client is slow.
    Overflow,
}

impl HoldBack {
    /// Looks at a channel push (offset 0: a join or leave); `limit` bounds
    /// the pushes one channel may keep back.
    pub fn offer(&self, push: &Arc<ChannelPush>, limit: usize) -> Offer {
        if !self.active.load(Ordering::Acquire) {
            return Offer::Pass;
        }
        let mut channels = self.channels.lock().expect("poisoned");
        match channels.get_mut(&push.channel) {
            Some(Held::Waiting(buffer)) => {
                if buffer.len() >= limit {
                    return Offer::Overflow;
                }
                buffer.push(push.clone());
                Offer::Kept
            }
            Some(Held::Covered(covered)) if push.offset != 0 => {
                if push.offset <= *covered {
                    return Offer::Skip;
                }
                channels.remove(&push.channel);
                self.active.store(!channels.is_empty(), Ordering::Release);
                Offer::Pass
            }
            _ => Offer::Pass,
        }
    }

    /// Starts keeping the channel's frames back.
    pub fn hold(&self, channel: &Arc<str>) {
        let mut channels = self.channels.lock().expect("poisoned");
        channels.insert(channel.clone(), Held::Waiting(Vec::new()));
        self.active.store(true, Ordering::Release);
    }

    /// Runs `first` (queueing the reply), then hands `queue` every kept push
    /// of `channels` newer than the offset paired with it (joins and leaves
    /// always pass), and stops keeping them back; later pushes up to that
    /// offset are skipped until a newer one arrives. All of it under the
    /// lock, so no live push of these channels slips in between.
    pub fn release(
        &self,
        channels: &[(Arc<str>, u64)],
        first: impl FnOnce(),
        mut queue: impl FnMut(Arc<ChannelPush>),
    ) {
        let mut held = self.channels.lock().expect("poisoned");
        first();
        for (channel, delivered) in channels {
            let mut covered = *delivered;
            if let Some(Held::Waiting(pushes)) = held.remove(channel) {
                for push in pushes {
                    if push.offset == 0 || push.offset > covered {
                        covered = covered.max(push.offset);
                        queue(push);
                    }
                }
            }
            if covered > 0 && covered != u64::MAX {
                held.insert(channel.clone(), Held::Covered(covered));
            }
        }
        self.active.store(!held.is_empty(), Ordering::Release);
    }

    /// Stops looking at a channel's frames (the session left it).
    pub fn forget(&self, channel: &str) {
        let mut held = self.channels.lock().expect("poisoned");
        if held.remove(channel).is_some() {
            self.active.store(!held.is_empty(), Ordering::Release);
        }
    }
}
