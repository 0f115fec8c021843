//! The engines a conformance test runs against: the memory engine (one node),
//! a standalone `redis-server`, a 3-master Redis Cluster; the servers live as
//! long as the [`Backend`].

use std::sync::Arc;

use herald_core::engine::{self, Engine};
use herald_testkit::{RedisCluster, RedisServer};

use super::recorder::{self, prefix, standalone, start, Recorder};

/// Where one test's engines keep their state.
pub enum Backend {
    /// Each engine is its own world: one node.
    Memory,
    Redis(RedisServer),
    Cluster(RedisCluster),
}

impl Backend {
    pub async fn memory() -> Backend {
        Backend::Memory
    }

    pub async fn redis() -> Backend {
        Backend::Redis(RedisServer::start().await.unwrap())
    }

    pub async fn cluster() -> Backend {
        Backend::Cluster(RedisCluster::start(3).await.unwrap())
    }

    /// Starts one node per recorder that share this backend (only the first one
    /// for the memory engine, which is a single node). Recorders are set up
    /// before: a node announces itself (its local channels) as it starts.
    pub async fn nodes(
        &self,
        test: &str,
        recorders: &[Arc<Recorder>],
    ) -> Vec<(Engine, Arc<Recorder>)> {
        let config = match self {
            Backend::Memory => engine::Config::default(),
            Backend::Redis(redis) => standalone(&redis.url(), &prefix(test)),
            Backend::Cluster(cluster) => recorder::cluster(cluster.seeds(), &prefix(test)),
        };
        let count = match self {
            Backend::Memory => 1,
            _ => recorders.len(),
        };
        let mut nodes = Vec::with_capacity(count);
        for rec in &recorders[..count] {
            nodes.push((start(&config, rec.clone()).await, rec.clone()));
        }
        nodes
    }
}

/// Recorders for nodes `uids`.
pub fn recorders(uids: &[&str]) -> Vec<Arc<Recorder>> {
    uids.iter().map(|uid| Recorder::new(uid)).collect()
}
