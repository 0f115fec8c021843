//! Runs connection writers without waking the connections' tasks. A fan-out
//! rings the writer of each connection it fed (see [`crate::outbox::Bell`]);
//! the writer puts itself on its flusher's dirty list, and one flusher task
//! per worker thread runs every dirty writer once per round (for a
//! WebSocket: one `writev` of its queued frames; for SSE: one chunk). Flushers schedule; they
//! know nothing of queues or sockets. Nothing waits on a timer: when the flusher is idle a frame goes
//! out at once, and while it is busy writing, later frames for the same
//! connection pile up and leave together in the next round. The coalescing
//! window is thus the time of one round, and grows only with load. Each
//! flusher accounts its writes locally and adds them to the metrics once per round.

use std::sync::{Arc, Mutex};

use herald_core::metrics::labels::Transport;
use herald_core::Metrics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::write_stats::WriteStats;

/// A writer that a flusher runs.
pub trait Flush: Send + Sync {
    /// Writes what is queued without waiting, counting in `stats`.
    fn flush_now(&self, stats: &mut FlushStats);
}

/// A flusher's write counts, one [`WriteStats`] per transport it wrote for.
pub struct FlushStats {
    metrics: Metrics,
    /// A flusher writes for one or two transports: a list beats a map.
    by_transport: Vec<(Transport, WriteStats)>,
}

impl FlushStats {
    /// Empty counts for `metrics`.
    pub fn new(metrics: Metrics) -> FlushStats {
        FlushStats {
            metrics,
            by_transport: Vec::new(),
        }
    }

    /// The counts of `transport`'s writes.
    pub fn of(&mut self, transport: Transport) -> &mut WriteStats {
        let index = match self.by_transport.iter().position(|(t, _)| *t == transport) {
            Some(index) => index,
            None => {
                let stats = WriteStats::new(self.metrics.transport(transport));
                self.by_transport.push((transport, stats));
                self.by_transport.len() - 1
            }
        };
        &mut self.by_transport[index].1
    }

    /// Adds the counts to the shared metrics.
    pub fn flush(&mut self) {
        for (_, stats) in &mut self.by_transport {
            stats.flush();
        }
    }
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
        metrics: &Metrics,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Flushers {
        let shards = (0..count.max(1))
            .map(|_| {
                let shard = Arc::new(Shard::default());
                // A token each: flushers going idle never contend on one lock.
                let cancel = cancel.child_token();
                let stats = FlushStats::new(metrics.clone());
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

async fn run(shard: Arc<Shard>, mut stats: FlushStats, cancel: CancellationToken) {
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
