//! Publishes per second one engine sustains through one real Redis (a
//! `redis-server` started on a free port), at several publisher concurrencies.
//!
//! Run with `cargo bench -p herald-core --bench redis_publish`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::engine::{self, NoConnections, PublishOptions};
use herald_core::namespace::{self, Namespaces};
use herald_core::{Channel, Engine, Metrics};
use herald_testkit::RedisServer;
use serde_json::value::RawValue;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let redis = RedisServer::start().await.expect("redis-server");
    let config = engine::Config {
        redis_url: Some(redis.url()),
        redis_prefix: "bench".into(),
        ..engine::Config::default()
    };
    let engine = Arc::new(
        Engine::start(&config, Arc::new(NoConnections::default()), Metrics::new())
            .await
            .expect("engine"),
    );
    let mut configured = HashMap::new();
    configured.insert(
        "h".to_owned(),
        namespace::Config {
            history_size: Some(100),
            history_ttl: Some(Duration::from_secs(60)),
            ..namespace::Config::default()
        },
    );
    let namespaces = Namespaces::from_config(&configured).expect("namespaces");
    for concurrency in [1usize, 16, 64, 256] {
        let total = 20_000;
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let engine = engine.clone();
                let channel = Channel::parse(&format!("h:bench{t}"), &namespaces).expect("channel");
                tokio::spawn(async move {
                    for n in 0..total / concurrency {
                        let data = RawValue::from_string(n.to_string()).expect("json");
                        engine
                            .publish(&channel, data, PublishOptions::default())
                            .await
                            .expect("publish");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("publisher");
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!("{concurrency:>4} concurrent publishers: {rate:>8.0} publishes/s");
    }
    engine.close().await;
}
