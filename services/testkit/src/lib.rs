//! Herald's test kit (dev only): real processes on free ports for integration
//! tests. Each module owns one kind of process or client; `fuzz` owns the
//! corpus and mutations of the parsers' property tests.

pub mod client;
pub mod fuzz;
pub mod herald;
pub mod netns;
pub mod otlp;
pub mod redis;
pub mod resp;
pub mod sse;
pub mod tls;

pub use redis::{RedisCluster, RedisServer};
