//! Delivery workers: pub/sub messages are spread over a fixed set of tasks by
//! channel (bounded queues, so a channel's order holds) and delivered to the
//! handler exactly once and in offset order. A gap (offset jump, epoch change,
//! reconnect, lagging reader) is filled from the history stream before anything
//! newer; when history no longer reaches back the handler hears `on_unrecoverable`.
//! Per-channel state is in `state`, gap filling in `fill`.

mod fill;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::conn::Shared;
use super::envelope::{self, Message};
use super::keys::spread;
use crate::publication::StreamPosition;
use state::ChannelState;

/// Delivery tasks; a channel always goes to the same one.
pub(super) const WORKERS: usize = 8;
const QUEUE: usize = 4096;
/// Stream entries read per gap-filling request.
const CHUNK: usize = 1000;
/// Messages held per channel while it waits for its start position or a gap fill.
const MAX_PENDING: usize = 1000;
/// Concurrent gap-filling reads per worker.
const READS_IN_FLIGHT: usize = 32;
/// How often channels whose gap fill failed are retried.
const RETRY: Duration = Duration::from_secs(1);
/// Channels that never got a start position (messages that raced an unsubscribe) are dropped after this.
const ORPHAN_AFTER: Duration = Duration::from_secs(30);

/// Work for a delivery task.
#[derive(Debug)]
pub(super) enum Event {
    /// A raw pub/sub message of a channel.
    Message { channel: Arc<str>, payload: Bytes },
    /// The node subscribed a channel with history: deliver what comes after `position`.
    Init {
        channel: Arc<str>,
        position: StreamPosition,
    },
    /// The node unsubscribed a channel.
    Forget { channel: Arc<str> },
    /// Messages may have been missed (reconnect, lag) on subscriber connection `conn`
    /// (`None`: any): check every channel against its stream.
    Resync { conn: Option<usize> },
}

/// Senders to the delivery tasks.
#[derive(Clone)]
pub(super) struct Workers {
    senders: Vec<mpsc::Sender<Event>>,
}

impl Workers {
    /// Spawns the delivery tasks on `tracker`.
    pub(super) fn spawn(
        shared: Arc<Shared>,
        connections: usize,
        tracker: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) -> Workers {
        let senders = (0..WORKERS)
            .map(|index| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let worker = Worker {
                    index,
                    shared: shared.clone(),
                    connections,
                    channels: HashMap::new(),
                };
                tracker.spawn(worker.run(rx, cancel.clone()));
                tx
            })
            .collect();
        Workers { senders }
    }

    /// Queues an event for the channel's worker (waits while that queue is full).
    pub(super) async fn send(&self, channel: &str, event: Event) {
        let _ = self.senders[spread(channel) % WORKERS].send(event).await;
    }

    /// Asks every worker to check its channels (of connection `conn`, or all).
    pub(super) async fn resync(&self, conn: Option<usize>) {
        for tx in &self.senders {
            let _ = tx.send(Event::Resync { conn }).await;
        }
    }
}

struct Worker {
    /// This worker's number, also its shard in `shared.positions`.
    index: usize,
    shared: Arc<Shared>,
    connections: usize,
    channels: HashMap<Arc<str>, ChannelState>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>, cancel: CancellationToken) {
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                _ = retry.tick() => {
                    self.channels.retain(|_, s| !s.is_orphan());
                    let dirty = self.dirty_channels();
                    self.fill(dirty).await;
                }
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Message { channel, payload } => match envelope::decode(&payload) {
                Ok(msg) => {
                    if self.on_message(&channel, msg) {
                        self.fill(vec![channel]).await;
                    }
                }
                Err(e) => warn!(%channel, error = %e, "undecodable pub/sub message dropped"),
            },
            Event::Init { channel, position } => {
                let state = self
                    .channels
                    .entry(channel.clone())
                    .or_insert_with(ChannelState::new);
                if state.position.is_none() {
                    state.position = Some((position.offset, Arc::from(position.epoch)));
                }
                if self.replay(&channel) {
                    self.fill(vec![channel.clone()]).await;
                }
                self.settle(&channel);
            }
            Event::Forget { channel } => {
                self.channels.remove(&channel);
                self.shared.positions.forget(self.index, &channel);
            }
            Event::Resync { conn } => {
                let n = self.connections;
                for (name, state) in self.channels.iter_mut() {
                    if state.position.is_some() && conn.is_none_or(|c| spread(name) % n == c) {
                        state.dirty = true;
                    }
                }
                let dirty = self.dirty_channels();
                self.fill(dirty).await;
            }
        }
    }

    fn dirty_channels(&self) -> Vec<Arc<str>> {
        self.channels
            .iter()
            .filter(|(_, s)| s.dirty && s.position.is_some())
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Delivers or holds one message; `true` when the channel needs a gap fill.
    fn on_message(&mut self, channel: &Arc<str>, msg: Message) -> bool {
        let handler = &self.shared.handler;
        let positions = &self.shared.positions;
        let (offset, epoch) = match &msg {
            Message::Publication { offset, epoch, .. } if *offset > 0 => (*offset, epoch),
            _ => {
                // Without an offset there is nothing to check; keep order behind held messages.
                match self.channels.get_mut(channel) {
                    Some(state) if state.is_waiting() => state.hold(channel, msg),
                    _ => deliver(handler.as_ref(), channel, msg),
                }
                return false;
            }
        };
        let state = self
            .channels
            .entry(channel.clone())
            .or_insert_with(ChannelState::new);
        let Some((last, current)) = &mut state.position else {
            state.hold(channel, msg);
            return false;
        };
        if state.dirty {
            state.hold(channel, msg);
            return false;
        }
        let same_epoch = epoch.as_str() == &**current;
        if same_epoch && offset <= *last {
            return false;
        }
        if same_epoch && offset == *last + 1 {
            *last = offset;
            positions.unsettle(self.index, channel);
            deliver(handler.as_ref(), channel, msg);
            positions.settle(self.index, channel, offset, current);
            return false;
        }
        state.dirty = true;
        state.hold(channel, msg);
        true
    }

    /// Publishes the channel's delivered position for joining connections.
    fn settle(&self, channel: &Arc<str>) {
        if let Some((offset, epoch)) = self.channels.get(channel).and_then(|s| s.position.as_ref())
        {
            self.shared
                .positions
                .settle(self.index, channel, *offset, epoch);
        }
    }

    /// Re-runs held messages after the position changed; `true` when another gap showed.
    fn replay(&mut self, channel: &Arc<str>) -> bool {
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        if state.is_waiting() {
            return false;
        }
        let current = state
            .position
            .as_ref()
            .map(|p| p.1.clone())
            .unwrap_or_default();
        let held = state.take_held();
        let mut gap = false;
        for msg in held {
            if gap {
                self.channels
                    .get_mut(channel)
                    .expect("present")
                    .hold(channel, msg);
                continue;
            }
            // Held publications of another epoch predate the position just read.
            if matches!(&msg, Message::Publication { offset, epoch, .. } if *offset > 0 && epoch.as_str() != &*current)
            {
                continue;
            }
            gap = self.on_message(channel, msg);
        }
        gap
    }
}

fn deliver(handler: &dyn crate::engine::Handler, channel: &str, msg: Message) {
    match msg {
        Message::Publication { publication, .. } => handler.on_publication(channel, &publication),
        Message::Join(info) => handler.on_join(channel, &info),
        Message::Leave(info) => handler.on_leave(channel, &info),
    }
}
