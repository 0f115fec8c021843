//! Connections: fred client configuration (standalone or Cluster, timeouts,
//! reconnects), the shared command context with its error mapping; its
//! metrics are in `metrics`.
//! Subscriptions live in `pubsub`; this module only builds the clients.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::{Client, Pool};
use fred::error::Error as FredError;
use fred::prelude::ClientLike;
use fred::types::config::{
    Config as FredConfig, ReconnectPolicy, ServerConfig, UnresponsiveConfig,
};
use fred::types::{Builder, RespVersion};
use futures_util::FutureExt;

use super::keys::Keys;
use super::metrics::{ErrorKind, RedisMetrics};
use super::positions::Positions;
use super::scripts::Scripts;
use crate::engine::{Config, EngineError, Handler};

/// Every command gets an answer or an error within this time.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept for commands (publish, history, presence); fred pipelines on each.
const POOL_SIZE: usize = 2;
/// Pub/sub messages a subscriber connection may buffer before its reader falls
/// behind (`RecvError::Lagged`, handled by a gap check of every channel).
const SUBSCRIBER_BUFFER: usize = 4096;

/// What every part of the engine shares: the command pool, names, scripts, the handler.
pub(super) struct Shared {
    pub(super) pool: Pool,
    pub(super) cluster: bool,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    pub(super) handler: Arc<dyn Handler>,
    pub(super) metrics: RedisMetrics,
    /// This node's id (from the handler, or generated).
    pub(super) uid: String,
    /// How far delivery of each channel with history has come.
    pub(super) positions: Positions,
    /// The handler's channels version of the channel map last written.
    pub(super) channels_written: AtomicU64,
}

impl Shared {
    /// A connected command client, or `Unavailable` at once (never queue while Redis is down).
    pub(super) fn client(&self) -> Result<&Client, EngineError> {
        let client = self.pool.next_connected();
        if client.is_connected() {
            Ok(client)
        } else {
            self.metrics.error(ErrorKind::Connection);
            Err(EngineError::Unavailable("redis is not connected".into()))
        }
    }

    /// The connection for batched publishes: always the first while it is up,
    /// since one connection keeps the batches in flight in the order sent.
    pub(super) fn publish_client(&self) -> Result<&Client, EngineError> {
        match self.pool.clients().first() {
            Some(first) if first.is_connected() => Ok(first),
            _ => self.client(),
        }
    }

    /// Runs one Redis operation with a deadline, recording its latency and errors.
    /// A combinator, not an `async` block: one would keep the deadline's future
    /// twice in its state (captured, then awaited), and fred's command futures
    /// take several KiB each.
    pub(super) fn timed<'a, T>(
        &'a self,
        op: &'static str,
        fut: impl Future<Output = Result<T, FredError>> + 'a,
    ) -> impl Future<Output = Result<T, EngineError>> + 'a {
        let started = Instant::now();
        tokio::time::timeout(COMMAND_TIMEOUT + Duration::from_secs(1), fut).map(move |result| {
            self.metrics
                .latency
                .with_label_values(&[op])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(self.fail(op, e)),
                Err(_) => {
                    self.metrics.error(ErrorKind::Timeout);
                    Err(EngineError::Unavailable(format!("redis {op}: timed out")))
                }
            }
        })
    }

    /// Counts and maps a fred error.
    pub(super) fn fail(&self, op: &str, e: FredError) -> EngineError {
        self.metrics.error(ErrorKind::of(&e));
        map_error(op, &e)
    }
}

/// Maps fred errors: answers the server refused (`ERR ...`, bad arguments,
/// undecodable replies) are `Internal`, everything else (connection, routing,
/// timeouts, `CLUSTERDOWN`, `LOADING`...) is `Unavailable`.
pub(super) fn map_error(op: &str, e: &FredError) -> EngineError {
    use fred::error::ErrorKind as K;
    let msg = format!("redis {op}: {e}");
    let refused = match e.kind() {
        K::InvalidCommand | K::InvalidArgument | K::Protocol | K::Parse | K::Config | K::Url => {
            true
        }
        K::Unknown => e.details().starts_with("ERR") && !e.details().contains("LOADING"),
        _ => false,
    };
    if refused {
        EngineError::Internal(msg)
    } else {
        EngineError::Unavailable(msg)
    }
}

/// The fred configuration for the configured deployment; `true` for Cluster.
pub(super) fn fred_config(config: &Config) -> Result<(FredConfig, bool), EngineError> {
    let bad = |e: FredError| EngineError::Internal(format!("invalid redis address: {e}"));
    let (mut cfg, cluster) = if !config.redis_cluster.is_empty() {
        let mut seeds = config.redis_cluster.iter().map(|s| s.trim());
        let first = seeds.next().unwrap_or_default();
        let first = if first.contains("://") {
            first.to_owned()
        } else {
            format!("redis://{first}")
        };
        let others: Vec<String> = seeds
            .filter(|s| !s.is_empty())
            .map(|s| format!("node={}", s.split("://").last().unwrap_or(s)))
            .collect();
        let sep = if first.contains('?') { '&' } else { '?' };
        let url = if others.is_empty() {
            first
        } else {
            format!("{first}{sep}{}", others.join("&"))
        };
        (FredConfig::from_url_clustered(&url).map_err(bad)?, true)
    } else {
        let url = config
            .redis_url
            .as_deref()
            .unwrap_or("redis://127.0.0.1:6379");
        let cfg = FredConfig::from_url(url).map_err(bad)?;
        if !matches!(cfg.server, ServerConfig::Centralized { .. }) {
            return Err(EngineError::Internal(
                "engine.redis_url must be a standalone redis:// or rediss:// URL (for a cluster use engine.redis_cluster)".into(),
            ));
        }
        (cfg, false)
    };
    cfg.version = RespVersion::RESP3;
    cfg.fail_fast = true;
    Ok((cfg, cluster))
}

fn builder(config: &FredConfig, subscriber: bool) -> Builder {
    let mut b = Builder::from_config(config.clone());
    b.with_performance_config(|p| {
        p.default_command_timeout = COMMAND_TIMEOUT;
        if subscriber {
            p.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
        }
    })
    .with_connection_config(|c| {
        c.connection_timeout = Duration::from_secs(3);
        c.internal_command_timeout = Duration::from_secs(3);
        // A publish whose connection dies is not re-sent: it may have run already.
        c.max_command_attempts = if subscriber { 3 } else { 1 };
        c.tcp.nodelay = Some(true);
        c.unresponsive = UnresponsiveConfig {
            max_timeout: Some(COMMAND_TIMEOUT),
            interval: Duration::from_secs(1),
        };
    })
    .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    b
}

/// Connects the command pool.
pub(super) async fn connect_pool(config: &FredConfig) -> Result<Pool, EngineError> {
    let pool = builder(config, false)
        .build_pool(POOL_SIZE)
        .map_err(|e| map_error("connect", &e))?;
    tokio::time::timeout(COMMAND_TIMEOUT, pool.init())
        .await
        .map_err(|_| EngineError::Unavailable("redis connect: timed out".into()))?
        .map_err(|e| map_error("connect", &e))?;
    Ok(pool)
}

/// Builds (without connecting) one subscriber connection.
pub(super) fn subscriber(config: &FredConfig) -> Result<Client, EngineError> {
    builder(config, true)
        .build()
        .map_err(|e| map_error("connect", &e))
}

/// Connects a subscriber built by [`subscriber`].
pub(super) async fn connect(client: &Client) -> Result<(), EngineError> {
    tokio::time::timeout(COMMAND_TIMEOUT, client.init())
        .await
        .map_err(|_| EngineError::Unavailable("redis connect: timed out".into()))?
        .map(|_| ())
        .map_err(|e| map_error("connect", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: Option<&str>, cluster: &[&str]) -> Config {
        Config {
            redis_url: url.map(Into::into),
            redis_cluster: cluster.iter().map(|s| s.to_string()).collect(),
            redis_prefix: "h".into(),
        }
    }

    #[test]
    fn parses_standalone_cluster_and_tls_addresses() {
        let (c, cluster) = fred_config(&cfg(Some("redis://10.0.0.1:6380/2"), &[])).unwrap();
        assert!(!cluster);
        assert_eq!(c.server.hosts()[0].port, 6380);
        assert_eq!(c.database, Some(2));
        let (c, _) = fred_config(&cfg(Some("rediss://u:p@example.com:6379"), &[])).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.password.as_deref(), Some("p"));
        let (c, cluster) = fred_config(&cfg(
            None,
            &["127.0.0.1:7000", "redis://127.0.0.1:7001", "127.0.0.1:7002"],
        ))
        .unwrap();
        assert!(cluster);
        let mut ports: Vec<u16> = c.server.hosts().iter().map(|s| s.port).collect();
        ports.sort();
        assert_eq!(ports, [7000, 7001, 7002]);
        assert!(fred_config(&cfg(Some("redis-cluster://127.0.0.1:7000"), &[])).is_err());
    }
}
