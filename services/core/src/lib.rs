//! Herald's domain, shared by every role: channel names and namespaces, the
//! Centrifugo-compatible client protocol codec, publications, token auth,
//! the engines (memory, Redis) and the metrics registry.
//!
//! Nothing here does network IO towards clients: transports live in
//! `herald-gateway`, the server API in `herald-publisher`.

pub mod auth;
pub mod channel;
pub mod channel_ops;
pub mod config;
pub mod control;
pub mod engine;
pub mod metrics;
pub mod namespace;
pub mod protocol;
pub mod publication;
pub mod refusals;
pub mod tls;
pub mod trace;

pub use channel::Channel;
pub use engine::Engine;
pub use metrics::Metrics;
pub use publication::{ClientInfo, Publication, StreamPosition};

/// Herald's version, as reported to clients and by `/api/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
