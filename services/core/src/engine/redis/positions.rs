//! Where this node's delivery of each channel stands, readable by connections
//! that join a channel the node already receives: their subscribe reply can
//! then give the channel's position without a round trip to Redis.
//!
//! A delivery worker marks a channel unsettled before it hands a publication
//! to the handler and settles it at the new offset afterwards. A settled
//! position read after a connection registered with the hub is exact for it:
//! every publication up to that offset was handed out before the read, and
//! every later one is handed out after it, so it reaches the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::keys::spread;
use crate::publication::StreamPosition;

struct Slot {
    offset: u64,
    /// Shared with the delivery worker's state of the channel.
    epoch: Arc<str>,
    settled: bool,
}

/// Delivery positions of the channels with history, sharded like the workers.
pub(super) struct Positions {
    shards: Vec<Mutex<HashMap<Arc<str>, Slot>>>,
}

impl Positions {
    pub(super) fn new(shards: usize) -> Positions {
        Positions {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// The shard a channel's worker uses (`spread(channel) % shards`).
    fn shard_of(&self, channel: &str) -> usize {
        spread(channel) % self.shards.len()
    }

    fn shard(&self, shard: usize) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.shards[shard].lock().expect("poisoned")
    }

    /// The channel's delivered position, unless a delivery is under way or it is unknown.
    pub(super) fn settled(&self, channel: &str) -> Option<StreamPosition> {
        let shard = self.shard(self.shard_of(channel));
        let slot = shard.get(channel).filter(|s| s.settled)?;
        Some(StreamPosition {
            offset: slot.offset,
            epoch: slot.epoch.to_string(),
        })
    }

    /// Called before publications of `channel` are handed to the handler.
    pub(super) fn unsettle(&self, shard: usize, channel: &str) {
        if let Some(slot) = self.shard(shard).get_mut(channel) {
            slot.settled = false;
        }
    }

    /// Everything up to `offset` of `epoch` has been handed to the handler.
    pub(super) fn settle(&self, shard: usize, channel: &Arc<str>, offset: u64, epoch: &Arc<str>) {
        let mut shard = self.shard(shard);
        match shard.get_mut(channel) {
            Some(slot) => {
                slot.offset = offset;
                if !Arc::ptr_eq(&slot.epoch, epoch) {
                    slot.epoch = epoch.clone();
                }
                slot.settled = true;
            }
            None => {
                let slot = Slot {
                    offset,
                    epoch: epoch.clone(),
                    settled: true,
                };
                shard.insert(channel.clone(), slot);
            }
        }
    }

    /// The node no longer receives `channel`.
    pub(super) fn forget(&self, shard: usize, channel: &str) {
        self.shard(shard).remove(channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_answered_only_while_settled() {
        let positions = Positions::new(4);
        let channel: Arc<str> = Arc::from("user:1");
        let shard = positions.shard_of(&channel);
        assert_eq!(positions.settled(&channel), None);
        positions.settle(shard, &channel, 7, &Arc::from("e1"));
        assert_eq!(
            positions.settled(&channel),
            Some(StreamPosition {
                offset: 7,
                epoch: "e1".into()
            })
        );
        positions.unsettle(shard, &channel);
        assert_eq!(positions.settled(&channel), None);
        positions.settle(shard, &channel, 8, &Arc::from("e2"));
        assert_eq!(
            positions.settled(&channel).map(|p| (p.offset, p.epoch)),
            Some((8, "e2".into()))
        );
        positions.forget(shard, &channel);
        assert_eq!(positions.settled(&channel), None);
    }
}
