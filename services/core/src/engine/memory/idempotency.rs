//! The memory engine's idempotent publishing: the position a keyed publish
//! answered, per channel and key, for [`IDEMPOTENCY_TTL`]. Bounded: at most
//! [`MAX_RESULTS`] are kept; past that the oldest are forgotten before their
//! time (a repeat of one of them then publishes again).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::SHARDS;
use crate::engine::IDEMPOTENCY_TTL;
use crate::publication::StreamPosition;

/// Results kept at most, over every channel (each shard keeps its share).
pub const MAX_RESULTS: usize = 131_072;
const PER_SHARD: usize = MAX_RESULTS / SHARDS;

/// A channel and a key.
type Id = (Arc<str>, String);

/// First results of keyed publishes, in shards by channel and key.
pub(super) struct Results {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    results: HashMap<Id, (Instant, StreamPosition)>,
    /// Ids oldest first: every result lives as long, so this is also expiry order.
    order: VecDeque<(Instant, Id)>,
}

impl Shard {
    fn forget_expired(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= IDEMPOTENCY_TTL)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((at, id)) = self.order.pop_front() {
            if self.results.get(&id).is_some_and(|(t, _)| *t == at) {
                self.results.remove(&id);
            }
        }
    }
}

impl Results {
    pub(super) fn new() -> Results {
        Results {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The position recorded for `key` in `channel`, or else `publish`'s, then
    /// recorded. The shard stays locked meanwhile: of concurrent calls with one
    /// key, one publishes and the others answer its position.
    pub(super) fn once(
        &self,
        channel: &Arc<str>,
        key: String,
        now: Instant,
        publish: impl FnOnce() -> StreamPosition,
    ) -> StreamPosition {
        let id = (channel.clone(), key);
        let mut shard = self.shards[shard_of(&id)].lock().expect("poisoned");
        shard.forget_expired(now);
        if let Some((_, position)) = shard.results.get(&id) {
            return position.clone();
        }
        let position = publish();
        if shard.results.len() >= PER_SHARD {
            shard.forget_oldest();
        }
        shard.order.push_back((now, id.clone()));
        shard.results.insert(id, (now, position.clone()));
        position
    }

    /// Drops expired results (repeats after that publish again).
    pub(super) fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            shard.lock().expect("poisoned").forget_expired(now);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let shards = self.shards.iter().map(|s| s.lock().expect("poisoned"));
        shards.map(|s| s.results.len()).sum()
    }
}

fn shard_of(id: &Id) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(offset: u64) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: "e".into(),
        }
    }

    #[test]
    fn a_repeat_answers_the_first_position_until_it_expires() {
        let results = Results::new();
        let ch: Arc<str> = "c".into();
        let t0 = Instant::now();
        let published = std::cell::Cell::new(0);
        let publish = |now: Instant, key: &str| {
            results.once(&ch, key.into(), now, || {
                published.set(published.get() + 1);
                at(published.get())
            })
        };
        assert_eq!(publish(t0, "k"), at(1));
        assert_eq!(publish(t0 + Duration::from_secs(299), "k"), at(1));
        assert_eq!(publish(t0 + Duration::from_secs(1), "other"), at(2));
        assert_eq!(publish(t0 + IDEMPOTENCY_TTL, "k"), at(3), "expired");
        assert_eq!(published.get(), 3);
        let other: Arc<str> = "d".into();
        assert_eq!(results.once(&other, "k".into(), t0, || at(9)), at(9));
    }

    #[test]
    fn results_are_bounded_and_swept() {
        let results = Results::new();
        let ch: Arc<str> = "c".into();
        let t0 = Instant::now();
        for n in 0..(MAX_RESULTS as u64 + 5_000) {
            results.once(&ch, n.to_string(), t0, || at(n));
        }
        let kept = results.len();
        assert!(kept <= MAX_RESULTS, "{kept} kept");
        assert!(kept > MAX_RESULTS / 2, "{kept} kept");
        results.sweep(t0 + Duration::from_secs(1));
        assert_eq!(results.len(), kept, "nothing expired yet");
        results.sweep(t0 + IDEMPOTENCY_TTL);
        assert_eq!(results.len(), 0);
    }
}
