//! The embedded engine: one process, channels' history and presence in memory.
//! Publications reach the handler synchronously, under the channel's lock, so
//! per-channel order is the offset order. Streams idle for long (no publish,
//! no read) are swept, as Redis expires their keys. Presence is in `presence`,
//! the results of keyed (idempotent) publishes in `idempotency`.

mod idempotency;
mod presence;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Handler, History, HistoryQuery, PublishOptions};
use crate::channel::Channel;
use crate::control::{self, NodeInfo};
use crate::engine::EngineError;
use crate::publication::{sanitize, ClientInfo, Publication, RawJson, StreamPosition};

const SHARDS: usize = 64;

/// A stream's position (epoch and offset) outlives its publications by this much.
const POSITION_TTL: Duration = Duration::from_secs(3600);

/// How often idle streams are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Shard<T> = Mutex<HashMap<Arc<str>, T>>;

/// The memory engine.
pub struct Memory {
    inner: Arc<Inner>,
    /// Stops the sweeper.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

struct Inner {
    handler: Arc<dyn Handler>,
    /// The handler's node id, read once (a node description is not free to build).
    uid: String,
    streams: Vec<Shard<Arc<Mutex<Stream>>>>,
    presence: Vec<Shard<HashMap<String, ClientInfo>>>,
    results: idempotency::Results,
}

struct Stream {
    epoch: String,
    offset: u64,
    publications: VecDeque<Publication>,
    last_publish: Instant,
    last_used: Instant,
    keep: Duration,
}

impl Stream {
    fn new(channel: &Channel) -> Stream {
        Stream {
            epoch: new_epoch(),
            offset: 0,
            publications: VecDeque::new(),
            last_publish: Instant::now(),
            last_used: Instant::now(),
            keep: channel.options().history_ttl + POSITION_TTL,
        }
    }

    fn expire(&mut self, channel: &Channel) {
        self.last_used = Instant::now();
        if self.last_publish.elapsed() > channel.options().history_ttl {
            self.publications.clear();
        }
    }

    fn is_idle(&self) -> bool {
        self.last_used.elapsed() > self.keep
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }
}

/// A short random stream generation id.
pub fn new_epoch() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 8)
}

fn shard_of(name: &str) -> usize {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

fn shards<T>() -> Vec<Shard<T>> {
    (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()
}

impl Inner {
    fn stream(&self, channel: &Channel) -> Arc<Mutex<Stream>> {
        let mut shard = self.streams[shard_of(channel.name())]
            .lock()
            .expect("poisoned");
        shard
            .entry(channel.name_arc().clone())
            .or_insert_with(|| Arc::new(Mutex::new(Stream::new(channel))))
            .clone()
    }

    fn sweep(&self) {
        for shard in &self.streams {
            shard
                .lock()
                .expect("poisoned")
                .retain(|_, s| !s.lock().expect("poisoned").is_idle());
        }
        self.results.sweep(Instant::now());
    }
}

async fn run_sweeper(inner: Weak<Inner>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        match inner.upgrade() {
            Some(inner) => inner.sweep(),
            None => return,
        }
    }
}

impl Memory {
    /// An empty engine delivering to `handler`, with no background task (idle
    /// streams are not swept): see [`Memory::start`].
    pub fn new(handler: Arc<dyn Handler>) -> Memory {
        Memory {
            inner: Arc::new(Inner {
                uid: handler.node_info().uid,
                handler,
                streams: shards(),
                presence: shards(),
                results: idempotency::Results::new(),
            }),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// An empty engine that also sweeps idle streams, on a task of the current
    /// runtime that stops on `cancel` or at [`Memory::close`].
    pub fn start(handler: Arc<dyn Handler>, cancel: CancellationToken) -> Memory {
        let mut engine = Memory::new(handler);
        engine.cancel = cancel;
        let sweeper = run_sweeper(Arc::downgrade(&engine.inner), engine.cancel.clone());
        engine.tasks.spawn(sweeper);
        engine.tasks.close();
        engine
    }

    /// See [`super::Engine::publish`].
    pub async fn publish(
        &self,
        channel: &Channel,
        data: RawJson,
        mut options: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        Ok(match options.idempotency_key.take() {
            Some(key) => self
                .inner
                .results
                .once(channel.name_arc(), key, Instant::now(), || {
                    self.publish_now(channel, data, options)
                }),
            None => self.publish_now(channel, data, options),
        })
    }

    fn publish_now(
        &self,
        channel: &Channel,
        data: RawJson,
        options: PublishOptions,
    ) -> StreamPosition {
        let mut publication = Publication {
            offset: 0,
            data: sanitize(data),
            info: options.info,
            tags: options.tags,
            time: crate::now_ms(),
            trace: options.trace.map(Box::new),
        };
        let opts = channel.options();
        if !opts.has_history() || options.skip_history {
            self.inner
                .handler
                .on_publication(channel.name(), &publication);
            return StreamPosition::default();
        }
        let stream = self.inner.stream(channel);
        let mut s = stream.lock().expect("poisoned");
        s.expire(channel);
        s.offset += 1;
        s.last_publish = Instant::now();
        publication.offset = s.offset;
        self.inner
            .handler
            .on_publication(channel.name(), &publication);
        publication.trace = None;
        s.publications.push_back(publication);
        while s.publications.len() > opts.history_size {
            s.publications.pop_front();
        }
        s.position()
    }

    /// Nothing to do: every publication reaches the handler.
    pub async fn subscribe(&self, _channel: &Channel) -> Result<(), EngineError> {
        Ok(())
    }

    /// Nothing to do.
    pub async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    /// See [`super::Engine::history`].
    pub async fn history(
        &self,
        channel: &Channel,
        query: HistoryQuery,
    ) -> Result<History, EngineError> {
        if !channel.options().has_history() {
            return Ok(History::default());
        }
        let stream = self.inner.stream(channel);
        let mut s = stream.lock().expect("poisoned");
        s.expire(channel);
        let position = s.position();
        let since = match &query.since {
            Some(p) if p.epoch == s.epoch => p.offset,
            Some(_) => {
                return Ok(History {
                    publications: Vec::new(),
                    position,
                })
            }
            None => 0,
        };
        let limit = query.limit.unwrap_or(usize::MAX);
        let after = s.publications.iter().filter(|p| p.offset > since);
        let publications: Vec<Publication> = if query.reverse {
            after.rev().take(limit).cloned().collect()
        } else {
            after.take(limit).cloned().collect()
        };
        Ok(History {
            publications,
            position,
        })
    }

    /// See [`super::Engine::remove_history`].
    pub async fn remove_history(&self, channel: &Channel) -> Result<(), EngineError> {
        self.inner
            .stream(channel)
            .lock()
            .expect("poisoned")
            .publications
            .clear();
        Ok(())
    }

    /// See [`super::Engine::publish_join`].
    pub async fn publish_join(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        self.inner.handler.on_join(channel.name(), info);
        Ok(())
    }

    /// See [`super::Engine::publish_leave`].
    pub async fn publish_leave(
        &self,
        channel: &Channel,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        self.inner.handler.on_leave(channel.name(), info);
        Ok(())
    }

    /// See [`super::Engine::publish_control`].
    pub async fn publish_control(&self, command: &control::Command) -> Result<(), EngineError> {
        self.inner.handler.on_control(command);
        Ok(())
    }

    /// See [`super::Engine::send_to_node`]: the one node is this one.
    pub async fn send_to_node(
        &self,
        node: &str,
        emulation: &control::Emulation,
    ) -> Result<bool, EngineError> {
        if node != self.inner.uid {
            return Ok(false);
        }
        self.inner.handler.on_emulation(emulation.clone());
        Ok(true)
    }

    /// This node only.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        Ok(vec![self.inner.handler.node_info()])
    }

    /// This node's channels.
    pub async fn channels(&self) -> Result<HashMap<String, u64>, EngineError> {
        Ok(self.inner.handler.channels(usize::MAX))
    }

    /// Always ready.
    pub fn is_ready(&self) -> bool {
        true
    }

    /// Stops the sweeper.
    pub async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoConnections;
    use crate::namespace::Namespaces;
    use serde_json::value::RawValue;

    fn data(n: u64) -> RawJson {
        RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap()
    }

    #[tokio::test]
    async fn the_sweeper_stops_on_its_token() {
        let cancel = CancellationToken::new();
        let engine = Memory::start(Arc::new(NoConnections::default()), cancel.clone());
        assert_eq!(engine.tasks.len(), 1, "one sweeper");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), engine.tasks.wait())
            .await
            .expect("the sweeper stopped");
    }

    #[tokio::test]
    async fn idle_streams_are_swept_and_get_a_new_epoch() {
        let engine = Memory::new(Arc::new(NoConnections::default()));
        let ch = Channel::parse("user:9", &Namespaces::default()).unwrap();
        let first = engine
            .publish(&ch, data(1), PublishOptions::default())
            .await
            .unwrap();
        engine.inner.sweep();
        let h = engine.history(&ch, HistoryQuery::default()).await.unwrap();
        assert_eq!(h.position, first, "recently used streams stay");
        let mut s = engine.inner.stream(&ch);
        s.lock().unwrap().keep = Duration::ZERO;
        engine.inner.sweep();
        s = engine.inner.stream(&ch);
        assert_ne!(s.lock().unwrap().epoch, first.epoch);
    }
}
