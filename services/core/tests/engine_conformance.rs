//! The engine contract, one suite run against every engine: the memory engine,
//! a real standalone `redis-server` and a real 3-master Redis Cluster. Publish
//! and history, idempotent publishing, presence, join/leave, control commands,
//! node discovery, exactly-once delivery in offset order and the trace context
//! a publication carries to every node. What only one
//! engine does (Redis reconnects, key expiry, debounced unsubscribes, the
//! memory sweeper) is tested in that engine's own file.

#[path = "support/recorder.rs"]
mod recorder;

#[path = "support/backend.rs"]
mod backend;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backend::{recorders, Backend};
use futures_util::future::join_all;
use herald_core::control::Command;
use herald_core::engine::{self, Engine, Handler, HistoryQuery, PresenceStats, PublishOptions};
use herald_core::trace::TraceParent;
use herald_core::{ClientInfo, StreamPosition};
use recorder::*;

const WAIT: Duration = Duration::from_secs(40);

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: None,
        chan_info: None,
    }
}

fn offsets(h: &engine::History) -> Vec<u64> {
    h.publications.iter().map(|p| p.offset).collect()
}

async fn publish_history_offsets_and_epoch(backend: &Backend) {
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

async fn presence_counts_clients_and_users(backend: &Backend) {
    let nodes = backend.nodes("presence", &recorders(&["a"])).await;
    let engine = &nodes[0].0;
    let ch = channel("pres:room");
    for (user, client) in [("u1", "c1"), ("u1", "c2"), ("u2", "c3")] {
        engine.add_presence(&ch, &info(user, client)).await.unwrap();
    }
    let stats = engine.presence_stats(&ch).await.unwrap();
    assert_eq!(
        stats,
        PresenceStats {
            num_clients: 3,
            num_users: 2
        }
    );
    engine.remove_presence(&ch, "c3").await.unwrap();
    let p = engine.presence(&ch).await.unwrap();
    assert_eq!(
        p.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["c1".into(), "c2".into()])
    );
    assert_eq!(p["c1"].user, "u1");
    let stats = engine.presence_stats(&ch).await.unwrap();
    assert_eq!(
        stats,
        PresenceStats {
            num_clients: 2,
            num_users: 1
        }
    );
    engine.close().await;
}

async fn join_leave_control_and_nodes_reach_every_node(backend: &Backend) {
    let all = recorders(&["a", "b"]);
    all[0].set_local_channels(&[("x", 2), ("y", 1)]);
    all[1].set_local_channels(&[("x", 3)]);
    let nodes = backend.nodes("control", &all).await;
    let mut want_channels: HashMap<String, u64> = HashMap::new();
    for (_, rec) in &nodes {
        for (c, n) in rec.channels() {
            *want_channels.entry(c).or_default() += n;
        }
    }
    let (a, b) = (&nodes[0].0, &nodes[nodes.len() - 1].0);
    let recorders: Vec<&Recorder> = nodes.iter().map(|(_, r)| &**r).collect();
    let all_uids: Vec<String> = recorders.iter().map(|r| r.uid.clone()).collect();

    let uids: Vec<String> = b
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.uid)
        .collect();
    assert_eq!(uids, all_uids);
    assert_eq!(a.channels().await.unwrap(), want_channels);

    // Pub/sub keeps nothing: a node whose subscriber connection is being re-established
    // (as happens while a new cluster's topology settles) misses what is published
    // meanwhile. Send until every node has one; each gets each at most once, in order.
    let mut sent = Vec::new();
    let reached_all = || recorders.iter().all(|r| !r.controls().is_empty());
    for attempt in 1.. {
        let cmd = Command::Disconnect {
            user: "42".into(),
            client: None,
            code: 3000,
            reason: format!("bye {attempt}"),
        };
        a.publish_control(&cmd).await.unwrap();
        sent.push(cmd);
        if holds_within(Duration::from_secs(2), reached_all).await {
            break;
        }
        assert!(attempt < 20, "the control command never reached every node");
    }
    for rec in &recorders {
        let controls = rec.controls();
        let mut rest = sent.iter();
        assert!(
            controls.iter().all(|c| rest.any(|s| s == c)),
            "node {}: {controls:?} is not a subsequence of {sent:?}",
            rec.uid
        );
    }

    for i in 0..6 {
        let ch = channel(&format!("pres:room{i}"));
        for (engine, _) in &nodes {
            engine.subscribe(&ch).await.unwrap();
        }
        b.add_presence(&ch, &info("u", "c1")).await.unwrap();
        b.add_presence(&ch, &info("u", "c2")).await.unwrap();
        assert_eq!(
            a.presence_stats(&ch).await.unwrap(),
            PresenceStats {
                num_clients: 2,
                num_users: 1
            }
        );
        b.publish_join(&ch, &info("u", "c1")).await.unwrap();
        b.publish(&ch, data("hi"), PublishOptions::default())
            .await
            .unwrap();
        b.publish_leave(&ch, &info("u", "c1")).await.unwrap();
        let want = [
            Seen::Join("c1".into()),
            Seen::Pub {
                offset: 0,
                data: data_text("hi"),
            },
            Seen::Leave("c1".into()),
        ];
        for rec in &recorders {
            eventually(WAIT, "join, publication, leave", || {
                rec.seen(ch.name()).len() >= 3
            })
            .await;
            assert_eq!(rec.seen(ch.name()), want, "node {}", rec.uid);
        }
    }

    if nodes.len() > 1 {
        b.close().await;
        let uids: Vec<String> = a
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.uid)
            .collect();
        assert_eq!(uids, ["a"], "a closed node leaves at once");
    }
    a.close().await;
}

async fn delivers_exactly_once_in_order_across_nodes(backend: &Backend) {
    let nodes = backend.nodes("twonodes", &recorders(&["a", "b"])).await;
    let engines: Vec<&Engine> = nodes.iter().map(|(e, _)| e).collect();
    let recorders: Vec<&Recorder> = nodes.iter().map(|(_, r)| &**r).collect();
    let channels: Vec<String> = (0..40).map(|i| format!("h:ch{i}")).collect();
    let parsed: Vec<_> = channels.iter().map(|c| channel(c)).collect();
    let subscribes = parsed
        .iter()
        .flat_map(|c| engines.iter().map(move |e| e.subscribe(c)));
    for r in join_all(subscribes).await {
        r.unwrap();
    }
    let per_channel = 75; // 3000 publications
    let publishing = channels.iter().enumerate().map(|(i, name)| {
        let engines = &engines;
        async move {
            let ch = channel(name);
            for n in 0..per_channel {
                // Each node publishes into every channel, alternately.
                let engine = engines[(i + n) % engines.len()];
                engine
                    .publish(&ch, data(&format!("{name}-{n}")), PublishOptions::default())
                    .await
                    .unwrap();
            }
        }
    });
    join_all(publishing).await;
    expect_every_publication(&recorders, &channels, per_channel, WAIT).await;
    let first = recorders[0].data(&channels[0]);
    assert_eq!(first[0], data_text(&format!("{}-0", channels[0])));
    for engine in engines {
        engine.close().await;
    }
}

fn keyed(key: &str) -> PublishOptions {
    PublishOptions {
        idempotency_key: Some(key.into()),
        ..Default::default()
    }
}

async fn a_repeated_idempotency_key_publishes_once(backend: &Backend) {
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

async fn a_trace_context_reaches_every_node(backend: &Backend) {
    let nodes = backend.nodes("traced", &recorders(&["a", "b"])).await;
    let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = || PublishOptions {
        trace: TraceParent::parse(text),
        ..Default::default()
    };
    for name in ["h:traced", "plain:traced"] {
        let ch = channel(name);
        for (engine, _) in &nodes {
            engine.subscribe(&ch).await.unwrap();
        }
        let (a, _) = &nodes[0];
        a.publish(&ch, data("1"), traced()).await.unwrap();
        a.publish(&ch, data("2"), PublishOptions::default())
            .await
            .unwrap();
        for (_, recorder) in &nodes {
            eventually(WAIT, "both publications", || {
                recorder.traces(name).len() == 2
            })
            .await;
            assert_eq!(recorder.traces(name), [Some(text.to_owned()), None]);
        }
        let history = a.history(&ch, HistoryQuery::default()).await.unwrap();
        assert!(history.publications.iter().all(|p| p.trace.is_none()));
    }
    for (engine, _) in &nodes {
        engine.close().await;
    }
}

/// One test per engine for each contract function.
macro_rules! for_every_engine {
    ($($test:ident),* $(,)?) => {
        for_every_engine!(@backend memory: $($test),*);
        for_every_engine!(@backend redis: $($test),*);
        for_every_engine!(@backend cluster: $($test),*);
    };
    (@backend $backend:ident: $($test:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::$backend().await).await;
                }
            )*
        }
    };
}

for_every_engine!(
    publish_history_offsets_and_epoch,
    presence_counts_clients_and_users,
    join_leave_control_and_nodes_reach_every_node,
    delivers_exactly_once_in_order_across_nodes,
    a_repeated_idempotency_key_publishes_once,
    a_trace_context_reaches_every_node,
);
