//! The `[client]` configuration section: timings and limits of client connections.

use std::time::Duration;

use serde::Deserialize;

/// Client connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Server ping interval.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub ping_interval: Duration,
    /// How long a ping may stay unanswered (must be shorter than the interval).
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub pong_timeout: Duration,
    /// How long a connection may stay open without sending `connect`.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub stale_timeout: Duration,
    /// Grace after token expiry before an unrefreshed connection is closed.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub expired_grace: Duration,
    /// How long one write to a client may take before it is dropped.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub write_timeout: Duration,
    /// Frames queued per connection before it is closed as slow.
    pub queue_size: usize,
    /// Largest accepted incoming message, bytes (larger: close 1009).
    pub max_message_size: usize,
    /// Most queued frames coalesced into one write.
    pub write_batch: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most publications one history or recovery answer carries.
    pub history_limit: usize,
    /// Most open client connections on this node (0: no cap); more get `503`.
    pub max_connections: usize,
    /// Most connected sessions of one user on this node (0: no cap); more
    /// get error 106 to their connect.
    pub max_connections_per_user: usize,
    /// New connections a second this node accepts (0: no limit); more get `503`.
    pub connect_rate: u32,
    /// Commands a second one connection may send (0: no limit); more get
    /// error 111, and a client that keeps on is closed with 3013.
    pub commands_per_second: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            stale_timeout: Duration::from_secs(10),
            expired_grace: Duration::from_secs(25),
            write_timeout: Duration::from_secs(10),
            queue_size: 256,
            max_message_size: 64 * 1024,
            write_batch: 64,
            max_subscriptions: 512,
            history_limit: 300,
            max_connections: 0,
            max_connections_per_user: 0,
            connect_rate: 0,
            commands_per_second: 0,
        }
    }
}

/// A setting that makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("client.{key}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl Config {
    /// Checks relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, reason| Err(ConfigError { key, reason });
        if self.ping_interval < Duration::from_millis(100) {
            return fail("ping_interval", "must be at least 100ms");
        }
        if self.pong_timeout.is_zero() || self.pong_timeout >= self.ping_interval {
            return fail(
                "pong_timeout",
                "must be positive and shorter than ping_interval",
            );
        }
        if self.queue_size == 0 {
            return fail("queue_size", "must be positive");
        }
        if self.max_message_size < 1024 {
            return fail("max_message_size", "must be at least 1024");
        }
        if self.write_batch == 0 {
            return fail("write_batch", "must be positive");
        }
        Ok(())
    }
}
