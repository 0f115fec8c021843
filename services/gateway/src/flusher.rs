//! Runs connection writers without waking the connections' tasks. A fan-out
//! rings the writer of each connection it fed (see [`crate::outbox::Bell`]);
//! the writer puts itself on its flusher's dirty list, and one flusher task
//! per worker thread runs every dirty writer once per round (for a
//! WebSocket: one `writev` of its queued frames). Flushers schedule; they
//! know nothing of queues or sockets. Nothing waits on a timer: when the flusher is idle a frame goes
//! out at once, and while it is busy writing, later frames for the same
//! connection pile up and leave together in the next round. The coalescing
//! window is thus the time of one round, and grows only with load. Each
//! flusher accounts its writes locally and adds them to the metrics once per round.

use std::sync::{Arc, Mutex};

use herald_core::metrics::TransportMetrics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::write_stats::WriteStats;

/// A writer that a flusher runs.
pub trait Flush: Send + Sync {
    /// Writes what is queued without waiting, counting in `stats`.
    fn flush_now(&self, stats: &mut WriteStats);
}

/// Writers run per round before the flusher lets other tasks run.
const ROUND: usize = 256;

/// The flusher tasks of a gateway.
pub struct Flushers {
    shards: Vec<Arc<Shard>>,
}

/// One flusher's dirty list.
#[derive(Default)]
pub struct Shard {
    dirty: Mutex<Vec<Arc<dyn Flush>>>,
    wake: Notify,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").finish_non_exhaustive()
    }
}

impl Flushers {
    /// Starts `count` flusher tasks on `tasks`; they stop on `cancel`.
    pub fn start(
        count: usize,
        metrics: &TransportMetrics,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Flushers {
        let shards = (0..count.max(1))
            .map(|_| {
                let shard = Arc::new(Shard::default());
                // A token each: flushers going idle never contend on one lock.
                let cancel = cancel.child_token();
                let stats = WriteStats::new(metrics);
                let run = run(shard.clone(), stats, cancel);
                tasks.spawn(tokio::task::unconstrained(run));
                shard
            })
            .collect();
        Flushers { shards }
    }

    /// The shard that writes for connection `conn`.
    pub fn shard(&self, conn: u64) -> Arc<Shard> {
        self.shards[(conn % self.shards.len() as u64) as usize].clone()
    }
}

impl Shard {
    /// Asks for `writer` to be run.
    pub fn schedule(&self, writer: Arc<dyn Flush>) {
        let mut dirty = self.dirty.lock().expect("poisoned");
        dirty.push(writer);
        if dirty.len() == 1 {
            drop(dirty);
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
impl Shard {
    /// Empties the dirty list (tests of the scheduling rules).
    pub(crate) fn take_dirty(&self) -> Vec<Arc<dyn Flush>> {
        std::mem::take(&mut *self.dirty.lock().expect("poisoned"))
    }
}

async fn run(shard: Arc<Shard>, mut stats: WriteStats, cancel: CancellationToken) {
    // Made once: the wake-up path polls only `notified` while work comes in.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut round = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = shard.wake.notified() => {}
            () = &mut cancelled => return,
        }
        loop {
            std::mem::swap(&mut round, &mut *shard.dirty.lock().expect("poisoned"));
            if round.is_empty() {
                break;
            }
            for (i, writer) in round.drain(..).enumerate() {
                writer.flush_now(&mut stats);
                if i % ROUND == ROUND - 1 {
                    tokio::task::yield_now().await;
                }
            }
            stats.flush();
        }
    }
}
