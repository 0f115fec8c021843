//! Publications with history go to Redis in batches: one script call (per
//! Cluster node) stores and publishes everything queued while earlier calls
//! were in flight. A write combiner, not a timer: an idle engine sends a lone
//! publication at once. Publications without history are plain `PUBLISH`es (`ops`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::ClusterInterface;
use fred::types::config::Server;
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
    /// Two exceptions: after Redis lost its scripts (a restart, a failover),
    /// calls in flight load the script and run again, and while a Cluster
    /// slot moves its publications are sent again alone (see `call`); two of
    /// them may then run in either order.
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

/// One script call per Cluster node (one in all on standalone Redis), each
/// caller answered with its own result or its call's error.
async fn send(shared: Arc<Shared>, batch: Vec<Queued>) {
    let client = match shared.publish_client() {
        Ok(client) => client,
        Err(e) => {
            for q in batch {
                let _ = q.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let groups = by_node(&shared, client, batch);
    join_all(groups.into_iter().map(|group| call(&shared, client, group))).await;
}

/// Where one script call goes: a Cluster node, or a single slot when the
/// client does not know the slot's node.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Node(Server),
    Slot(u16),
}

/// Publications for one script call, in submission order.
struct Group {
    members: Vec<Queued>,
    /// The Cluster node that serves their slots, as the client last saw them
    /// (the node's script then runs there); `None`: one slot's script, routed by its keys.
    node: Option<Server>,
}

/// Splits a batch by the Cluster node serving each publication's slot (as
/// the client last saw the slots; by slot where it knows no node), keeping
/// the order within each.
fn by_node(shared: &Shared, client: &Client, batch: Vec<Queued>) -> Vec<Group> {
    if !shared.cluster {
        return vec![Group {
            members: batch,
            node: None,
        }];
    }
    let routing = client.cached_cluster_state();
    let mut groups: BTreeMap<Route, Vec<Queued>> = BTreeMap::new();
    for q in batch {
        let stream = shared.keys.stream(&q.publication.channel);
        let slot = fred::util::redis_keyslot(stream.as_bytes());
        let route = match routing.as_ref().and_then(|r| r.get_server(slot)) {
            Some(server) => Route::Node(server.clone()),
            None => Route::Slot(slot),
        };
        groups.entry(route).or_default().push(q);
    }
    groups
        .into_iter()
        .map(|(route, members)| Group {
            members,
            node: match route {
                Route::Node(server) => Some(server),
                Route::Slot(_) => None,
            },
        })
        .collect()
}

/// Runs the publish script for one group: the node's script on its node
/// (keys then travel in ARGV, see `scripts`), or the slot's script. A
/// publication of a node's call whose slot the node no longer serves (it
/// moved after the client last saw the slots) changed nothing; the client's
/// view of the slots is renewed and it is sent again alone, routed by its
/// keys. During such a move a channel's publications of successive batches
/// may then get their offsets in another order than submitted.
async fn call(shared: &Shared, client: &Client, group: Group) {
    let Group { members, node } = group;
    shared.metrics.publish_batch.observe(members.len() as f64);
    let mut replies = Vec::with_capacity(members.len());
    let mut args = Args::default();
    for Queued { publication, reply } in members {
        args.add(shared, publication);
        replies.push(reply);
    }
    let count = replies.len();
    let results = match node {
        Some(node) => {
            let mut head = Vec::with_capacity(3 + args.keys.len());
            head.extend(call_head(shared));
            head.push((args.keys.len() as i64).into());
            head.extend(args.keys.iter().map(|k| Value::from(k.as_str())));
            let script = &shared.scripts.publish_batch_node;
            let parts: [&[Value]; 2] = [&head, &args.publications];
            let mut results = answers(
                shared,
                scripts::run_on(script, client, &node, &parts),
                count,
            )
            .await;
            if results
                .iter()
                .any(|r| r.as_ref().is_err_and(scripts::slot_moved))
            {
                // The client's view of the slots is stale: renew it, then route each by its keys.
                let _ = client.sync_cluster().await;
            }
            for (i, result) in results.iter_mut().enumerate() {
                if result.as_ref().is_err_and(scripts::slot_moved) {
                    let (keys, alone) = args.alone(shared, i);
                    let script = &shared.scripts.publish_batch;
                    let run = scripts::run(script, client, keys, alone);
                    *result = answers(shared, run, 1).await.remove(0);
                }
            }
            results
        }
        None => {
            let mut all = Vec::with_capacity(2 + args.publications.len());
            all.extend(call_head(shared));
            all.append(&mut args.publications);
            let script = &shared.scripts.publish_batch;
            answers(shared, scripts::run(script, client, args.keys, all), count).await
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// The answers of one batch script call: one per publication, `count` in all.
async fn answers(
    shared: &Shared,
    call: impl Future<Output = Result<Value, FredError>>,
    count: usize,
) -> Vec<Reply> {
    match shared.timed("publish", call).await {
        Ok(reply) => scripts::positions(reply, count),
        Err(e) => vec![Err(e); count],
    }
}

/// The arguments every batch call starts with: the publish command and the result TTL.
fn call_head(shared: &Shared) -> [Value; 2] {
    let command = if shared.cluster {
        "spublish"
    } else {
        "publish"
    };
    [command.into(), (IDEMPOTENCY_TTL.as_secs() as i64).into()]
}

/// The keys and arguments of a group's publications, in order.
#[derive(Default)]
struct Args {
    keys: Vec<String>,
    /// Where each publication's keys start in `keys`.
    starts: Vec<usize>,
    /// Eight per publication.
    publications: Vec<Value>,
}

impl Args {
    fn add(&mut self, shared: &Shared, p: Stored) {
        self.starts.push(self.keys.len());
        self.keys.push(shared.keys.stream(&p.channel));
        self.keys.push(shared.keys.meta(&p.channel));
        if let Some(key) = &p.idempotency_key {
            self.keys.push(shared.keys.result(&p.channel, key));
        }
        self.publications.extend([
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
    }

    /// Keys and arguments of publication `i` alone, for the slot's script.
    fn alone(&self, shared: &Shared, i: usize) -> (Vec<String>, Vec<Value>) {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.keys.len());
        let keys = self.keys[self.starts[i]..end].to_vec();
        let mut args = Vec::with_capacity(10);
        args.extend(call_head(shared));
        args.extend_from_slice(&self.publications[8 * i..8 * i + 8]);
        (keys, args)
    }
}
