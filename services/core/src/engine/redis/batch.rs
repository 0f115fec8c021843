//! Publications with history go to Redis in batches: one script call (per
//! Cluster slot) stores and publishes everything queued while earlier calls
//! were in flight. A write combiner, not a timer: an idle engine sends a lone
//! publication at once. Publications without history are plain `PUBLISH`es (`ops`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::types::Value;
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::coop::unconstrained;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::Shared;
use super::scripts;
use crate::engine::memory::new_epoch;
use crate::engine::{EngineError, IDEMPOTENCY_TTL};
use crate::publication::StreamPosition;

/// Most publications in one batch.
const MAX_BATCH: usize = 256;
/// A batch stops growing once its publications reach this many bytes.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Batches in flight at once, so that Redis works while answers travel.
const MAX_IN_FLIGHT: usize = 4;
/// Publications waiting for a batch; further callers wait for room, in turn.
const QUEUE: usize = 4096;

/// One publication into a channel with history, as the publish script takes it.
pub(super) struct Stored {
    pub(super) channel: Arc<str>,
    /// The stored publication JSON.
    pub(super) body: String,
    pub(super) history_size: usize,
    pub(super) history_ttl: Duration,
    pub(super) idempotency_key: Option<String>,
    /// `traceparent` carried to the delivering nodes, empty for none.
    pub(super) traceparent: String,
}

type Reply = Result<StreamPosition, EngineError>;

struct Queued {
    publication: Stored,
    reply: oneshot::Sender<Reply>,
}

/// The queue of the engine's batched publishes; the task draining it is the engine's.
pub(super) struct Batcher {
    queue: mpsc::Sender<Queued>,
    /// Held by a caller until its publication is in the queue. Waiting for
    /// the queue's room alone is not enough for order: a waiter given room
    /// enqueues only when next polled, and a newcomer finding room meanwhile
    /// would pass it. Callers take this lock first come, first served.
    turn: Mutex<()>,
}

impl Batcher {
    /// Starts the task that sends the batches, on `tracker`, until `cancel`.
    pub(super) fn spawn(
        shared: Arc<Shared>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Batcher {
        let (queue, queued) = mpsc::channel(QUEUE);
        tracker.spawn(run(shared, queued, cancel.clone()));
        Batcher {
            queue,
            turn: Mutex::new(()),
        }
    }

    /// Stores and publishes one publication with the next batch. Publications
    /// are sent in the order their calls were first polled (callers take
    /// turns, first come, first served), so one caller's successive publishes into
    /// a channel get increasing offsets even when it does not await each one.
    /// One exception: after Redis lost its scripts (a restart, a failover),
    /// calls in flight load the script and run again, and two of them may
    /// then run in either order.
    pub(super) async fn publish(&self, publication: Stored) -> Reply {
        let (reply, answer) = oneshot::channel();
        // Outside the task's cooperative budget: a send refused for want of
        // budget would let a later call of this task take its place.
        let queued = unconstrained(async {
            let _turn = self.turn.lock().await;
            self.queue.send(Queued { publication, reply }).await
        });
        queued.await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> EngineError {
    EngineError::Unavailable("redis engine is closed".into())
}

/// Takes what is queued, one batch at a time, while fewer than
/// [`MAX_IN_FLIGHT`] batches are under way.
async fn run(shared: Arc<Shared>, mut queued: mpsc::Receiver<Queued>, cancel: CancellationToken) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            first = queued.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = first else { break };
                let mut batch = Box::pin(send(shared.clone(), gather(first, &mut queued)));
                // Polled once here, so that its commands are written before the
                // next batch's: one connection keeps a channel's offsets in order.
                if batch.as_mut().now_or_never().is_none() {
                    in_flight.push(batch);
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// `first` and whatever else is queued, up to the batch bounds.
fn gather(first: Queued, queued: &mut mpsc::Receiver<Queued>) -> Vec<Queued> {
    let mut bytes = first.publication.body.len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        let Ok(next) = queued.try_recv() else { break };
        bytes += next.publication.body.len();
        batch.push(next);
    }
    batch
}

/// One script call per Cluster slot (one in all on standalone Redis), each
/// caller answered with its own result or its call's error.
async fn send(shared: Arc<Shared>, batch: Vec<Queued>) {
    shared.metrics.publish_batch.observe(batch.len() as f64);
    let client = match shared.publish_client() {
        Ok(client) => client,
        Err(e) => {
            for q in batch {
                let _ = q.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let groups = by_slot(&shared, batch);
    join_all(groups.into_iter().map(|group| call(&shared, client, group))).await;
}

/// Splits a batch by Cluster slot (every key of one script call must share
/// one), keeping the order within each.
fn by_slot(shared: &Shared, batch: Vec<Queued>) -> Vec<Vec<Queued>> {
    if !shared.cluster {
        return vec![batch];
    }
    let mut groups: BTreeMap<u16, Vec<Queued>> = BTreeMap::new();
    for q in batch {
        let stream = shared.keys.stream(&q.publication.channel);
        let slot = fred::util::redis_keyslot(stream.as_bytes());
        groups.entry(slot).or_default().push(q);
    }
    groups.into_values().collect()
}

/// Runs the publish script for publications of one slot.
async fn call(shared: &Shared, client: &Client, group: Vec<Queued>) {
    let command = if shared.cluster {
        "spublish"
    } else {
        "publish"
    };
    let mut keys = Vec::with_capacity(group.len() * 3);
    let mut args: Vec<Value> = Vec::with_capacity(2 + group.len() * 8);
    args.push(command.into());
    args.push((IDEMPOTENCY_TTL.as_secs() as i64).into());
    let mut replies = Vec::with_capacity(group.len());
    for Queued {
        publication: p,
        reply,
    } in group
    {
        keys.push(shared.keys.stream(&p.channel));
        keys.push(shared.keys.meta(&p.channel));
        if let Some(key) = &p.idempotency_key {
            keys.push(shared.keys.result(&p.channel, key));
        }
        args.extend([
            p.body.into(),
            (p.history_size as i64).into(),
            (p.history_ttl.as_millis().max(1) as i64).into(),
            new_epoch().into(),
            (Shared::meta_ttl(p.history_ttl) as i64).into(),
            shared.keys.pubsub(&p.channel).into(),
            p.traceparent.into(),
            if p.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            }
            .into(),
        ]);
        replies.push(reply);
    }
    let script = scripts::run(&shared.scripts.publish_batch, client, keys, args);
    match shared.timed("publish", script).await {
        Ok(reply) => {
            let positions = scripts::positions(reply, replies.len());
            for (reply, position) in replies.into_iter().zip(positions) {
                let _ = reply.send(position);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
