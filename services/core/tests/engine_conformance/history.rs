//! Publish and history: offsets and epoch of a channel's stream, history queries, and
//! idempotent publishing across nodes. Run against every engine by `engine_conformance`.

use futures_util::future::join_all;
use herald_core::engine::{self, HistoryQuery, PublishOptions};
use herald_core::StreamPosition;

use super::backend::{recorders, Backend};
use super::recorder::*;
use super::WAIT;

fn offsets(h: &engine::History) -> Vec<u64> {
    h.publications.iter().map(|p| p.offset).collect()
}

pub async fn publish_history_offsets_and_epoch(backend: &Backend) {
    let nodes = backend.nodes("history", &recorders(&["a"])).await;
    let engine = &nodes[0].0;
    let ch = channel("h:hist");
    let mut last = StreamPosition::default();
    for n in 1..=5 {
        last = engine
            .publish(&ch, data(&n.to_string()), PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(last.offset, n);
    }
    assert!(!last.epoch.is_empty());

    let all = engine.history(&ch, HistoryQuery::default()).await.unwrap();
    assert_eq!(all.position, last);
    assert_eq!(offsets(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all.publications[0].data.get(), data_text("1"));
    assert!(all.publications[0].time > 0);

    let since = StreamPosition {
        offset: 2,
        epoch: last.epoch.clone(),
    };
    let q = HistoryQuery {
        since: Some(since.clone()),
        ..Default::default()
    };
    assert_eq!(offsets(&engine.history(&ch, q).await.unwrap()), [3, 4, 5]);
    let q = HistoryQuery {
        since: Some(since.clone()),
        limit: Some(2),
        reverse: false,
    };
    assert_eq!(offsets(&engine.history(&ch, q).await.unwrap()), [3, 4]);
    let q = HistoryQuery {
        since: Some(since),
        limit: Some(2),
        reverse: true,
    };
    assert_eq!(offsets(&engine.history(&ch, q).await.unwrap()), [5, 4]);
    let q = HistoryQuery {
        since: None,
        limit: Some(0),
        reverse: false,
    };
    let h = engine.history(&ch, q).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.position, last);

    let stale = StreamPosition {
        offset: 2,
        epoch: "other".into(),
    };
    let q = HistoryQuery {
        since: Some(stale),
        ..Default::default()
    };
    let h = engine.history(&ch, q).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.position, last);

    engine.remove_history(&ch).await.unwrap();
    let h = engine.history(&ch, HistoryQuery::default()).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.position, last, "removing history keeps the position");
    let next = engine
        .publish(&ch, data("6"), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(
        next,
        StreamPosition {
            offset: 6,
            epoch: last.epoch.clone()
        }
    );

    let short = channel("short:s");
    for n in 1..=5 {
        engine
            .publish(&short, data(&n.to_string()), PublishOptions::default())
            .await
            .unwrap();
    }
    let h = engine
        .history(&short, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(offsets(&h), [4, 5], "bounded by history_size");

    let latest = channel("one:l");
    for n in 1..=3 {
        engine
            .publish(&latest, data(&n.to_string()), PublishOptions::default())
            .await
            .unwrap();
    }
    let h = engine
        .history(&latest, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(h.position.offset, 3);
    assert_eq!(
        h.publications.len(),
        1,
        "a size of one keeps only the latest"
    );
    assert_eq!(h.publications[0].data.get(), data_text("3"));

    let plain = channel("plain:p");
    let pos = engine
        .publish(&plain, data("x"), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(pos, StreamPosition::default());
    let skipped = PublishOptions {
        skip_history: true,
        ..Default::default()
    };
    assert_eq!(
        engine.publish(&ch, data("x"), skipped).await.unwrap(),
        StreamPosition::default()
    );
    let h = engine.history(&ch, HistoryQuery::default()).await.unwrap();
    assert_eq!(h.position.offset, 6);
    engine.close().await;
}

fn keyed(key: &str) -> PublishOptions {
    PublishOptions {
        idempotency_key: Some(key.into()),
        ..Default::default()
    }
}

pub async fn a_repeated_idempotency_key_publishes_once(backend: &Backend) {
    let nodes = backend.nodes("idem", &recorders(&["a", "b"])).await;
    let (a, b) = (&nodes[0].0, &nodes[nodes.len() - 1].0);
    let (ch, other, plain) = (channel("h:idem"), channel("h:idem2"), channel("plain:i"));
    for (engine, _) in &nodes {
        for c in [&ch, &plain] {
            engine.subscribe(c).await.unwrap();
        }
    }
    let first = a.publish(&ch, data("1"), keyed("k1")).await.unwrap();
    assert_eq!(first.offset, 1);
    let retry = b.publish(&ch, data("retry"), keyed("k1")).await.unwrap();
    assert_eq!(retry, first, "a repeat answers the first position");
    let h = a.history(&ch, HistoryQuery::default()).await.unwrap();
    assert_eq!(offsets(&h), [1], "history holds one publication");
    assert_eq!(h.publications[0].data.get(), data_text("1"));
    let second = b.publish(&ch, data("2"), keyed("k2")).await.unwrap();
    assert_eq!(second.offset, 2, "another key publishes");
    let unkeyed = a.publish(&ch, data("3"), PublishOptions::default());
    assert_eq!(unkeyed.await.unwrap().offset, 3);
    let racing = (0..8).map(|i| {
        nodes[i % nodes.len()]
            .0
            .publish(&ch, data("race"), keyed("k3"))
    });
    let answers: Vec<StreamPosition> = join_all(racing)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        answers.iter().all(|p| *p == answers[0]),
        "concurrent repeats: {answers:?}"
    );
    assert_eq!(answers[0].offset, 4);
    let elsewhere = b.publish(&other, data("x"), keyed("k1")).await.unwrap();
    assert_eq!(
        elsewhere.offset, 1,
        "the same key in another channel publishes"
    );
    assert_eq!(
        a.history(&other, HistoryQuery::default())
            .await
            .unwrap()
            .position,
        elsewhere
    );

    for engine in [a, b, a] {
        let pos = engine
            .publish(&plain, data("p"), keyed("k1"))
            .await
            .unwrap();
        assert_eq!(pos, StreamPosition::default());
    }
    b.publish(&plain, data("end"), PublishOptions::default())
        .await
        .unwrap();
    let recorders: Vec<&Recorder> = nodes.iter().map(|(_, r)| &**r).collect();
    for rec in &recorders {
        eventually(WAIT, "the keyed publications", || {
            rec.offsets(ch.name()).len() >= 4 && rec.data(plain.name()).len() >= 2
        })
        .await;
        assert_exactly_once(rec, ch.name(), 4);
        assert_eq!(rec.data(ch.name())[0], data_text("1"), "node {}", rec.uid);
        assert_eq!(rec.data(plain.name()), [data_text("p"), data_text("end")]);
    }
    for (engine, _) in &nodes {
        engine.close().await;
    }
}
