//! Codec hot paths: encoding a publication push (once per channel per
//! publication) and parsing client command frames.
//!
//! Run with `cargo bench -p herald-core --bench codec`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_core::protocol::command::parse_frame;
use herald_core::publication::{encode_publication_push, Publication};
use serde_json::value::RawValue;

fn codec(c: &mut Criterion) {
    let publication = Publication {
        offset: 123_456,
        data: RawValue::from_string(
            r#"{"symbol":"AAPL","price":187.42,"seq":981723,"ts":1764171000123456}"#.into(),
        )
        .unwrap(),
        info: None,
        tags: None,
        time: 0,
        trace: None,
    };
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_publication_push", |b| {
        b.iter(|| encode_publication_push("stock:AAPL", &publication))
    });
    let frame = "{\"id\":1,\"connect\":{\"token\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig\",\"name\":\"js\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"stock:AAPL\",\"recover\":true,\"offset\":14,\"epoch\":\"x7\",\"flag\":1}}";
    group.bench_function("parse_connect_and_subscribe_frame", |b| {
        b.iter(|| parse_frame(frame).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
