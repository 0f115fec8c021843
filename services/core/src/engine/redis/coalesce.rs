//! Recovery reads coalesced per channel: forward history reads of one channel that arrive
//! within a short window of each other (the clients of a lost node recovering together) are
//! served by one read from the lowest position among them, each waiter getting the slice after
//! its own offset. Other reads, and how a read is done, are the caller's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::scripts::Read;
use crate::engine::EngineError;

/// How long the first read of a channel waits for others to join it.
pub(super) const WINDOW: Duration = Duration::from_millis(5);

/// Most waiters one read serves; later ones start the next batch.
const MAX_WAITERS: usize = 4096;

/// One waiter's share of a batch.
type Reply = Result<Read, EngineError>;

struct Waiter {
    after: u64,
    limit: usize,
    tx: oneshot::Sender<Reply>,
}

/// The reads of one channel gathered during a window.
struct Batch {
    id: u64,
    waiters: Vec<Waiter>,
}

impl Batch {
    /// Offset to read after and how many entries cover every waiter's range.
    fn range(&self) -> (u64, usize) {
        let from = self.waiters.iter().map(|w| w.after).min().unwrap_or(0);
        let upto = self
            .waiters
            .iter()
            .map(|w| w.after.saturating_add(w.limit as u64))
            .max()
            .unwrap_or(from);
        (from, usize::try_from(upto - from).unwrap_or(usize::MAX))
    }
}

/// Gathers the forward history reads of each channel of a node.
#[derive(Default)]
pub(super) struct Coalescer {
    batches: Mutex<HashMap<Arc<str>, Batch>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Where a read found itself on arrival.
enum Joined {
    /// First of its channel's batch: it does the read after the window.
    Leader(u64),
    /// In a batch under way: it waits for the leader's read.
    Follower,
    /// The batch under way is full: it reads alone.
    Full,
}

/// Removes its batch if the leading read is dropped before it took it, so that the waiters
/// hear of it (their sender goes) and nobody joins a batch no one will read.
struct Lead<'a> {
    coalescer: &'a Coalescer,
    channel: &'a Arc<str>,
    id: u64,
}

impl Lead<'_> {
    fn take(self) -> Option<Batch> {
        let batch = self.coalescer.take(self.channel, self.id);
        std::mem::forget(self);
        batch
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.coalescer.take(self.channel, self.id);
    }
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Batch>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, channel: &Arc<str>, id: u64) -> Option<Batch> {
        let mut batches = self.lock();
        match batches.get(channel) {
            Some(b) if b.id == id => batches.remove(channel),
            _ => None,
        }
    }

    /// Up to `limit` publications of `channel` after offset `after`, with the top position:
    /// joins the read under way in the window, or starts one and does it with `read(after,
    /// count)` once the window closed.
    pub(super) async fn read_after<F, Fut>(
        &self,
        channel: &Arc<str>,
        after: u64,
        limit: usize,
        read: F,
    ) -> Result<Read, EngineError>
    where
        F: FnOnce(u64, usize) -> Fut,
        Fut: std::future::Future<Output = Result<Read, EngineError>>,
    {
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { after, limit, tx };
        let joined = {
            let mut batches = self.lock();
            match batches.get_mut(channel) {
                Some(b) if b.waiters.len() < MAX_WAITERS => {
                    b.waiters.push(waiter);
                    Joined::Follower
                }
                Some(_) => Joined::Full,
                None => {
                    let id = self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let waiters = vec![waiter];
                    batches.insert(channel.clone(), Batch { id, waiters });
                    Joined::Leader(id)
                }
            }
        };
        let lead = match joined {
            Joined::Leader(id) => Lead {
                coalescer: self,
                channel,
                id,
            },
            Joined::Full => return read(after, limit).await,
            Joined::Follower => {
                return match rx.await {
                    Ok(reply) => reply,
                    // The leading read was dropped (its client went away): read alone.
                    Err(_) => read(after, limit).await,
                };
            }
        };
        tokio::time::sleep(WINDOW).await;
        let Some(batch) = lead.take() else {
            return read(after, limit).await;
        };
        let (from, count) = batch.range();
        let result = read(from, count).await;
        for w in batch.waiters {
            let _ = w.tx.send(slice(&result, w.after, w.limit));
        }
        rx.await.unwrap_or_else(|_| read_error())
    }
}

fn read_error() -> Result<Read, EngineError> {
    Err(EngineError::Internal("coalesced read lost".into()))
}

/// A waiter's part of a batch's read: up to `limit` publications after offset `after`.
fn slice(result: &Result<Read, EngineError>, after: u64, limit: usize) -> Reply {
    let read = result.as_ref().map_err(Clone::clone)?;
    Ok(Read {
        position: read.position.clone(),
        publications: read
            .publications
            .iter()
            .filter(|p| p.offset > after)
            .take(limit)
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publication::{Publication, StreamPosition};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn stored(offsets: std::ops::RangeInclusive<u64>) -> Read {
        Read {
            position: StreamPosition {
                offset: *offsets.end(),
                epoch: "e".into(),
            },
            publications: offsets
                .map(|offset| {
                    serde_json::from_str::<Publication>(&format!(
                        r#"{{"offset":{offset},"data":{{}}}}"#
                    ))
                    .unwrap()
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_in_one_window_share_one_read_and_get_their_own_slices() {
        let c = Coalescer::default();
        let ch: Arc<str> = Arc::from("h:x");
        let reads = AtomicUsize::new(0);
        let read = |from: u64, count: usize| {
            reads.fetch_add(1, Ordering::SeqCst);
            let top = 20u64.min(from + count as u64);
            async move { Ok(stored(from + 1..=top)) }
        };
        let (a, b, d) = tokio::join!(
            c.read_after(&ch, 10, 100, read),
            c.read_after(&ch, 4, 3, read),
            c.read_after(&ch, 20, 100, read),
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let offsets = |r: Read| r.publications.iter().map(|p| p.offset).collect::<Vec<_>>();
        assert_eq!(offsets(a.unwrap()), (11..=20).collect::<Vec<_>>());
        assert_eq!(offsets(b.unwrap()), [5, 6, 7]);
        let d = d.unwrap();
        assert_eq!(d.position.offset, 20);
        assert!(d.publications.is_empty());
        // The window is over: the next read is a batch of its own.
        c.read_after(&ch, 0, 1, read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_of_a_dropped_leader_read_alone() {
        let c = Coalescer::default();
        let ch: Arc<str> = Arc::from("h:y");
        let read =
            |from: u64, count: usize| async move { Ok(stored(from + 1..=from + count as u64)) };
        let mut leader = Box::pin(c.read_after(&ch, 0, 5, read));
        let mut follower = Box::pin(c.read_after(&ch, 2, 2, read));
        // Both registered; then the leader's client goes away.
        tokio::select! {
            biased;
            _ = &mut leader => unreachable!("still in its window"),
            _ = &mut follower => unreachable!("waits for the leader"),
            _ = std::future::ready(()) => {}
        }
        drop(leader);
        let r = follower.await.unwrap();
        assert_eq!(r.publications.len(), 2);
        assert!(c.lock().is_empty());
    }
}
