//! This node's emulation sessions by session id: where a client frame posted
//! to `/emulation` (here, or on another node that sent it on) finds the
//! session it is for. Each session has an [`Inbox`] of frames waiting for its
//! stream, bounded in frames and bytes; the stream owning the session
//! registers it and removes it when it ends. It knows nothing of HTTP.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use herald_core::control::ClientFrame;
use tokio::sync::Notify;

use super::shard;

/// Frames one session may have waiting.
const MAX_PENDING_FRAMES: usize = 32;

/// Bytes of frames one session may have waiting (two full-size frames at the
/// default `client.max_message_size`): a client that keeps posting while its
/// stream is not read gets `busy`, it does not grow the node's memory.
const MAX_PENDING_BYTES: usize = 128 * 1024;

/// Client frames waiting for one session's stream.
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    frames: VecDeque<ClientFrame>,
    bytes: usize,
}

impl Inbox {
    /// Adds a frame; false when the inbox is full.
    fn put(&self, frame: ClientFrame) -> bool {
        let mut pending = self.pending.lock().expect("poisoned");
        let bytes = pending.bytes + frame.len();
        // One frame is always taken, whatever its size (the body limit bounds it).
        if !pending.frames.is_empty()
            && (pending.frames.len() >= MAX_PENDING_FRAMES || bytes > MAX_PENDING_BYTES)
        {
            return false;
        }
        pending.bytes = bytes;
        pending.frames.push_back(frame);
        drop(pending);
        self.wake.notify_one();
        true
    }

    /// Takes the oldest frame.
    pub fn take(&self) -> Option<ClientFrame> {
        let mut pending = self.pending.lock().expect("poisoned");
        let frame = pending.frames.pop_front()?;
        pending.bytes -= frame.len();
        Some(frame)
    }

    /// Resolves when a frame may be waiting.
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

/// What became of a frame handed to [`Sessions::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Waiting for the session's stream.
    Queued,
    /// No session with that id on this node.
    Unknown,
    /// The session's inbox is full.
    Busy,
}

/// Emulation sessions of this node, sharded by id.
#[derive(Debug)]
pub struct Sessions {
    shards: Vec<Mutex<HashMap<Arc<str>, Arc<Inbox>>>>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            shards: (0..super::SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Sessions {
    /// Registers session `id`'s inbox.
    pub fn insert(&self, id: Arc<str>, inbox: Arc<Inbox>) {
        let mut shard = self.shards[shard(&*id)].lock().expect("poisoned");
        shard.insert(id, inbox);
    }

    /// Forgets session `id`.
    pub fn remove(&self, id: &str) {
        self.shards[shard(id)].lock().expect("poisoned").remove(id);
    }

    /// Hands a client frame to session `id`.
    pub fn deliver(&self, id: &str, frame: ClientFrame) -> Delivery {
        let inbox = self.shards[shard(id)]
            .lock()
            .expect("poisoned")
            .get(id)
            .cloned();
        match inbox {
            None => Delivery::Unknown,
            Some(inbox) if inbox.put(frame) => Delivery::Queued,
            Some(_) => Delivery::Busy,
        }
    }

    /// Registered sessions.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("poisoned").len())
            .sum()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> ClientFrame {
        ClientFrame::Json(text.to_owned())
    }

    #[test]
    fn frames_reach_the_registered_session_in_order() {
        let sessions = Sessions::default();
        let inbox = Arc::new(Inbox::default());
        sessions.insert(Arc::from("s1"), inbox.clone());
        assert_eq!(sessions.deliver("s1", json("a")), Delivery::Queued);
        assert_eq!(sessions.deliver("s1", json("b")), Delivery::Queued);
        assert_eq!(sessions.deliver("s2", json("c")), Delivery::Unknown);
        assert_eq!(inbox.take(), Some(json("a")));
        assert_eq!(inbox.take(), Some(json("b")));
        assert_eq!(inbox.take(), None);
        sessions.remove("s1");
        assert_eq!(sessions.deliver("s1", json("d")), Delivery::Unknown);
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_full_inbox_refuses_by_count_and_by_bytes() {
        let sessions = Sessions::default();
        let inbox = Arc::new(Inbox::default());
        sessions.insert(Arc::from("s"), inbox.clone());
        for _ in 0..MAX_PENDING_FRAMES {
            assert_eq!(sessions.deliver("s", json("{}")), Delivery::Queued);
        }
        assert_eq!(sessions.deliver("s", json("{}")), Delivery::Busy);
        while inbox.take().is_some() {}
        let big = vec![0u8; MAX_PENDING_BYTES];
        assert_eq!(
            sessions.deliver("s", ClientFrame::Protobuf(big.into())),
            Delivery::Queued,
            "one frame always fits"
        );
        assert_eq!(sessions.deliver("s", json("{}")), Delivery::Busy);
        assert_eq!(inbox.take().map(|f| f.len()), Some(MAX_PENDING_BYTES));
        assert_eq!(sessions.deliver("s", json("{}")), Delivery::Queued);
    }
}
