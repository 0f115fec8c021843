//! A recording engine handler and helpers shared by the Redis engine tests.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use herald_core::control::{Command, Emulation, NodeInfo};
use herald_core::engine::{self, Engine, Handler};
use herald_core::namespace::{self, Namespaces};
use herald_core::publication::RawJson;
use herald_core::{Channel, ClientInfo, Publication};
use serde_json::value::RawValue;

/// What a node's handler saw in one channel, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Pub { offset: u64, data: String },
    Join(String),
    Leave(String),
    Unrecoverable,
}

/// Records everything an engine delivers.
pub struct Recorder {
    pub uid: String,
    seen: Mutex<HashMap<String, Vec<Seen>>>,
    /// The trace context of each publication seen, by channel.
    traces: Mutex<HashMap<String, Vec<Option<String>>>>,
    controls: Mutex<Vec<Command>>,
    emulations: Mutex<Vec<Emulation>>,
    local: Mutex<HashMap<String, u64>>,
    /// Bumped by every [`Recorder::set_local_channels`].
    local_version: AtomicU64,
    needed: Mutex<HashSet<String>>,
    /// A channel whose deliveries block until released (a stalled consumer).
    gate: (Mutex<Option<String>>, Condvar),
}

impl Recorder {
    pub fn new(uid: &str) -> Arc<Recorder> {
        Arc::new(Recorder {
            uid: uid.into(),
            seen: Mutex::default(),
            traces: Mutex::default(),
            controls: Mutex::default(),
            emulations: Mutex::default(),
            local: Mutex::default(),
            local_version: AtomicU64::new(0),
            needed: Mutex::default(),
            gate: (Mutex::new(None), Condvar::new()),
        })
    }

    fn push(&self, channel: &str, s: Seen) {
        self.seen
            .lock()
            .unwrap()
            .entry(channel.into())
            .or_default()
            .push(s);
    }

    /// Everything seen in a channel.
    pub fn seen(&self, channel: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// The `traceparent` carried by each publication seen in a channel.
    pub fn traces(&self, channel: &str) -> Vec<Option<String>> {
        self.traces
            .lock()
            .unwrap()
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Offsets of the publications seen in a channel.
    pub fn offsets(&self, channel: &str) -> Vec<u64> {
        self.seen(channel)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Pub { offset, .. } => Some(offset),
                _ => None,
            })
            .collect()
    }

    /// Payloads of the publications seen in a channel.
    pub fn data(&self, channel: &str) -> Vec<String> {
        self.seen(channel)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Pub { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }

    pub fn unrecoverable(&self, channel: &str) -> bool {
        self.seen(channel).contains(&Seen::Unrecoverable)
    }

    pub fn controls(&self) -> Vec<Command> {
        self.controls.lock().unwrap().clone()
    }

    /// Emulation requests sent to this node, in arrival order.
    pub fn emulations(&self) -> Vec<Emulation> {
        self.emulations.lock().unwrap().clone()
    }

    /// Sets what `channels()` reports.
    pub fn set_local_channels(&self, channels: &[(&str, u64)]) {
        *self.local.lock().unwrap() = channels.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        self.local_version.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes deliveries of `channel` block (breaking the handler contract on
    /// purpose, to stall the engine) until [`Recorder::open_gate`], at most 10 s.
    pub fn close_gate(&self, channel: &str) {
        *self.gate.0.lock().unwrap() = Some(channel.into());
    }

    pub fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = None;
        self.gate.1.notify_all();
    }

    fn wait_at_gate(&self, channel: &str) {
        let closed = self.gate.0.lock().unwrap();
        let _ = self
            .gate
            .1
            .wait_timeout_while(closed, Duration::from_secs(10), |c| {
                c.as_deref() == Some(channel)
            })
            .unwrap();
    }

    /// Sets whether `has_subscribers(channel)` answers true.
    pub fn set_needed(&self, channel: &str, needed: bool) {
        let mut n = self.needed.lock().unwrap();
        if needed {
            n.insert(channel.into());
        } else {
            n.remove(channel);
        }
    }
}

impl Handler for Recorder {
    fn on_publication(&self, channel: &str, p: &Publication) {
        self.wait_at_gate(channel);
        self.traces
            .lock()
            .unwrap()
            .entry(channel.into())
            .or_default()
            .push(p.trace.as_ref().map(|t| t.to_string()));
        self.push(
            channel,
            Seen::Pub {
                offset: p.offset,
                data: p.data.get().to_owned(),
            },
        );
    }
    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.push(channel, Seen::Join(info.client.clone()));
    }
    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.push(channel, Seen::Leave(info.client.clone()));
    }
    fn on_control(&self, command: &Command) {
        self.controls.lock().unwrap().push(command.clone());
    }
    fn on_emulation(&self, emulation: Emulation) {
        self.emulations.lock().unwrap().push(emulation);
    }
    fn on_unrecoverable(&self, channel: &str) -> u64 {
        self.push(channel, Seen::Unrecoverable);
        1
    }
    fn has_subscribers(&self, channel: &str) -> bool {
        self.needed.lock().unwrap().contains(channel)
    }
    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            uid: self.uid.clone(),
            name: format!("node-{}", self.uid),
            ..NodeInfo::default()
        }
    }
    fn channels(&self, limit: usize) -> HashMap<String, u64> {
        let local = self.local.lock().unwrap();
        local
            .iter()
            .take(limit)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
    fn channels_version(&self) -> Option<u64> {
        Some(self.local_version.load(Ordering::SeqCst))
    }
}

/// Namespaces used by the tests: `h` (long history), `short` (2 kept), `one`
/// (the latest only), `plain` (no history), `pres` (presence, join/leave).
pub fn namespaces() -> Namespaces {
    let mut cfg = HashMap::new();
    let history = |size: usize| namespace::Config {
        history_size: Some(size),
        history_ttl: Some(Duration::from_secs(600)),
        ..namespace::Config::default()
    };
    cfg.insert("h".to_owned(), history(1_000_000));
    cfg.insert("short".to_owned(), history(2));
    cfg.insert("one".to_owned(), history(1));
    cfg.insert("plain".to_owned(), namespace::Config::default());
    cfg.insert(
        "pres".to_owned(),
        namespace::Config {
            presence: Some(true),
            join_leave: Some(true),
            ..namespace::Config::default()
        },
    );
    Namespaces::from_config(&cfg).unwrap()
}

pub fn channel(name: &str) -> Channel {
    Channel::parse(name, &namespaces()).unwrap()
}

pub fn data(s: &str) -> RawJson {
    RawValue::from_string(format!("{{\"v\":\"{s}\"}}")).unwrap()
}

/// The JSON `data(s)` produces, as the recorder stores it.
pub fn data_text(s: &str) -> String {
    format!("{{\"v\":\"{s}\"}}")
}

/// A unique key prefix per test.
pub fn prefix(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

pub fn standalone(url: &str, prefix: &str) -> engine::Config {
    engine::Config {
        redis_url: Some(url.into()),
        redis_cluster: Vec::new(),
        redis_prefix: prefix.into(),
    }
}

pub fn cluster(seeds: Vec<String>, prefix: &str) -> engine::Config {
    engine::Config {
        redis_url: None,
        redis_cluster: seeds,
        redis_prefix: prefix.into(),
    }
}

pub async fn start(config: &engine::Config, handler: Arc<Recorder>) -> Engine {
    start_with(config, handler, herald_core::Metrics::new()).await
}

pub async fn start_with(
    config: &engine::Config,
    handler: Arc<Recorder>,
    metrics: herald_core::Metrics,
) -> Engine {
    Engine::start(config, handler, metrics)
        .await
        .expect("engine starts")
}

/// The value of one sample line of the exposition, e.g. `herald_x_total{a="b"}`.
pub fn metric(metrics: &herald_core::Metrics, sample: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn eventually(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        holds_within(timeout, cond).await,
        "timed out waiting for {what}"
    );
}

/// Polls `cond` until it holds (true) or `timeout` passes (false).
pub async fn holds_within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Asserts that a channel saw exactly offsets `1..=n`, each once, in order.
pub fn assert_exactly_once(rec: &Recorder, channel: &str, n: u64) {
    let offsets = rec.offsets(channel);
    let expected: Vec<u64> = (1..=n).collect();
    assert_eq!(offsets, expected, "node {} channel {channel}", rec.uid);
    assert!(
        !rec.unrecoverable(channel),
        "node {} channel {channel} unrecoverable",
        rec.uid
    );
}

/// Waits until every recorder has `per_channel` publications on every channel,
/// then asserts each saw offsets `1..=per_channel` exactly once, in order.
pub async fn expect_every_publication(
    recorders: &[&Recorder],
    channels: &[String],
    per_channel: usize,
    timeout: Duration,
) {
    for rec in recorders {
        eventually(timeout, "every publication on every node", || {
            channels.iter().all(|c| rec.offsets(c).len() >= per_channel)
        })
        .await;
        for c in channels {
            assert_exactly_once(rec, c, per_channel as u64);
        }
    }
}
