//! Hub fan-out: one publication to every local subscriber of a channel
//! (encode once, queue the shared buffer to each), then the writers' drain.
//!
//! Run with `cargo bench -p herald-gateway --bench fanout`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::engine::Handler;
use herald_core::publication::Publication;
use herald_core::Metrics;
use herald_gateway::outbox::Outbox;
use herald_gateway::Hub;
use serde_json::value::RawValue;

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for subscribers in [100u64, 1_000, 10_000] {
        let hub = Hub::new("bench".into(), Metrics::new());
        let channel: Arc<str> = Arc::from("stock:AAPL");
        let mut outboxes = Vec::new();
        for conn in 0..subscribers {
            let outbox = Outbox::new(16);
            hub.subscribe(&channel, conn, outbox.clone());
            outboxes.push(outbox);
        }
        let publication = Publication {
            offset: 1,
            data: RawValue::from_string(r#"{"price":187.42,"seq":1}"#.into()).unwrap(),
            info: None,
            tags: None,
            time: 0,
            trace: None,
        };
        group.throughput(Throughput::Elements(subscribers));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    hub.on_publication("stock:AAPL", &publication);
                    for outbox in &outboxes {
                        outbox.take_frames();
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
