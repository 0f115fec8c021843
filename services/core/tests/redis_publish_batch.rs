//! Publications with history go to Redis in batches, one script call for
//! many: against a real standalone `redis-server` and a 3-master Cluster,
//! concurrent publishes keep per-channel offsets gapless and in submission
//! order, idempotency keys and history settings hold per publication, a
//! Cluster call carries the publications of every slot its node serves (and
//! a slot that moved meanwhile loses none), and a Redis that dies under a
//! stream of publishes fails them all, hanging none.

#[path = "support/recorder.rs"]
mod recorder;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use herald_core::engine::{Engine, EngineError, HistoryQuery, PublishOptions};
use herald_core::StreamPosition;
use herald_testkit::resp::Reply;
use herald_testkit::{RedisCluster, RedisServer};
use recorder::*;

const WAIT: Duration = Duration::from_secs(40);

fn keyed(key: &str) -> PublishOptions {
    PublishOptions {
        idempotency_key: Some(key.into()),
        ..PublishOptions::default()
    }
}

/// Script calls made so far and how many carried more than one publication.
fn batches(metrics: &herald_core::Metrics) -> (f64, f64) {
    let calls = metric(metrics, "herald_redis_publish_batch_size_count");
    let lone = metric(metrics, r#"herald_redis_publish_batch_size_bucket{le="1"}"#);
    (calls, calls - lone)
}

/// Publishes `count` publications into one channel, all submitted at once,
/// and checks that each caller got the offset of its turn and a second node
/// received every one once, in order, over fewer script calls than publications.
async fn one_channel_in_submission_order(config: &herald_core::engine::Config) {
    let (rp, rs) = (Recorder::new("p"), Recorder::new("s"));
    let metrics = herald_core::Metrics::new();
    let publisher = start_with(config, rp, metrics.clone()).await;
    let subscriber = start(config, rs.clone()).await;
    let ch = channel("h:one");
    subscriber.subscribe(&ch).await.unwrap();

    // More than the engine's queue holds: later callers wait for room, in turn.
    let count = 6000;
    let publishes = (0..count).map(|i| {
        let (publisher, ch) = (&publisher, &ch);
        async move {
            publisher
                .publish(ch, data(&i.to_string()), PublishOptions::default())
                .await
        }
    });
    let positions: Vec<StreamPosition> = join_all(publishes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let offsets: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (1..=count as u64).collect::<Vec<_>>());
    let epochs: HashSet<&str> = positions.iter().map(|p| p.epoch.as_str()).collect();
    assert_eq!(epochs.len(), 1, "one epoch: {epochs:?}");

    expect_every_publication(&[&rs], &["h:one".to_owned()], count, WAIT).await;
    let expected: Vec<String> = (0..count).map(|i| data_text(&i.to_string())).collect();
    assert_eq!(rs.data("h:one"), expected);
    let (calls, coalesced) = batches(&metrics);
    assert!(calls < count as f64, "{calls} script calls for {count}");
    assert!(coalesced > 0.0, "no batch held more than one publication");
    publisher.close().await;
    subscriber.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_keeps_submission_order_standalone() {
    let redis = RedisServer::start().await.unwrap();
    one_channel_in_submission_order(&standalone(&redis.url(), &prefix("order"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_keeps_submission_order_in_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    one_channel_in_submission_order(&recorder::cluster(cluster.seeds(), &prefix("order"))).await;
}

/// Publishes into many channels (many slots in Cluster) at once, each
/// channel's publications interleaved with the others', and checks each
/// channel's offsets and delivery.
async fn many_channels_at_once(config: &herald_core::engine::Config) {
    let (rp, rs) = (Recorder::new("p"), Recorder::new("s"));
    let metrics = herald_core::Metrics::new();
    let publisher = start_with(config, rp, metrics.clone()).await;
    let subscriber = start(config, rs.clone()).await;
    let channels: Vec<String> = (0..200).map(|i| format!("h:many{i}")).collect();
    let parsed: Vec<_> = channels.iter().map(|c| channel(c)).collect();
    for r in join_all(parsed.iter().map(|c| subscriber.subscribe(c))).await {
        r.unwrap();
    }
    let per_channel = 10;
    let publishes =
        (0..per_channel).flat_map(|n| parsed.iter().map(move |ch| (n, ch)).collect::<Vec<_>>());
    let results = join_all(publishes.map(|(n, ch)| {
        let publisher = &publisher;
        async move {
            let position = publisher
                .publish(ch, data(&n.to_string()), PublishOptions::default())
                .await;
            (n, ch.name().to_owned(), position)
        }
    }))
    .await;
    for (n, name, position) in results {
        let position = position.unwrap_or_else(|e| panic!("{name} #{n}: {e}"));
        assert_eq!(position.offset, n as u64 + 1, "{name} #{n}");
    }
    expect_every_publication(&[&rs], &channels, per_channel, WAIT).await;
    // A call carries publications of many channels: on a Cluster, of every
    // slot its node serves (one call per slot would carry one or two here).
    let (calls, _) = batches(&metrics);
    let count = channels.len() * per_channel;
    assert!(
        calls * 2.0 < count as f64,
        "{calls} script calls for {count} publications"
    );
    publisher.close().await;
    subscriber.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_at_once_standalone() {
    let redis = RedisServer::start().await.unwrap();
    many_channels_at_once(&standalone(&redis.url(), &prefix("many"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slots_at_once_in_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    many_channels_at_once(&recorder::cluster(cluster.seeds(), &prefix("many"))).await;
}

/// Keyed publishes mixed into a busy stream: a repeated key answers the first
/// result and publishes nothing, whichever batch it lands in.
async fn idempotency_inside_batches(config: &herald_core::engine::Config) {
    let (rp, rs) = (Recorder::new("p"), Recorder::new("s"));
    let metrics = herald_core::Metrics::new();
    let publisher = start_with(config, rp, metrics.clone()).await;
    let subscriber = start(config, rs.clone()).await;
    let ch = channel("h:idem");
    subscriber.subscribe(&ch).await.unwrap();
    // Filler first keeps the engine busy, so the keyed ones queue up together.
    let mut plan: Vec<(String, Option<&str>)> =
        (0..100).map(|i| (format!("fill{i}"), None)).collect();
    for (text, key) in [
        ("a1", "ka"),
        ("a2", "ka"),
        ("b1", "kb"),
        ("a3", "ka"),
        ("b2", "kb"),
    ] {
        plan.push((text.to_owned(), Some(key)));
    }
    let publishes = plan.iter().map(|(text, key)| {
        let (publisher, ch) = (&publisher, &ch);
        async move {
            let options = key.map(keyed).unwrap_or_default();
            publisher.publish(ch, data(text), options).await.unwrap()
        }
    });
    let positions = join_all(publishes).await;
    let by_text: HashMap<&str, u64> = plan
        .iter()
        .zip(&positions)
        .map(|((text, _), p)| (text.as_str(), p.offset))
        .collect();
    assert_eq!(by_text["a1"], 101);
    assert_eq!(by_text["b1"], 102);
    assert_eq!((by_text["a2"], by_text["a3"]), (101, 101));
    assert_eq!(by_text["b2"], 102);
    expect_every_publication(&[&rs], &["h:idem".to_owned()], 102, WAIT).await;
    let seen = rs.data("h:idem");
    for text in ["a2", "a3", "b2"] {
        assert!(!seen.contains(&data_text(text)), "{text} was published");
    }
    // Nothing more arrives after the keyed repeats.
    let extra = publisher
        .publish(&ch, data("last"), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(extra.offset, 103);
    let (_, coalesced) = batches(&metrics);
    assert!(coalesced > 0.0, "no batch held more than one publication");
    publisher.close().await;
    subscriber.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_hold_inside_batches_standalone() {
    let redis = RedisServer::start().await.unwrap();
    idempotency_inside_batches(&standalone(&redis.url(), &prefix("idem"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_hold_inside_batches_in_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    idempotency_inside_batches(&recorder::cluster(cluster.seeds(), &prefix("idem"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_settings_hold_per_publication_in_a_mixed_batch() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("mixed");
    let engine = start(&standalone(&redis.url(), &pfx), Recorder::new("p")).await;
    let names = ["short:m", "one:m", "h:m", "plain:m"];
    let parsed: Vec<_> = names.iter().map(|n| channel(n)).collect();
    let rounds = 10;
    let publishes = (0..rounds).flat_map(|n| parsed.iter().map(move |ch| (n, ch)));
    let results = join_all(publishes.map(|(n, ch)| {
        let engine = &engine;
        async move {
            let p = engine
                .publish(ch, data(&n.to_string()), PublishOptions::default())
                .await
                .unwrap();
            (ch.name().to_owned(), n, p.offset)
        }
    }))
    .await;
    for (name, n, offset) in results {
        let expected = if name == "plain:m" { 0 } else { n as u64 + 1 };
        assert_eq!(offset, expected, "{name} #{n}");
    }
    let kept = |ch| {
        let engine = &engine;
        async move {
            let h = engine.history(ch, HistoryQuery::default()).await.unwrap();
            let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
            (offsets, h.position.offset)
        }
    };
    assert_eq!(kept(&parsed[0]).await, (vec![9, 10], 10));
    assert_eq!(kept(&parsed[1]).await, (vec![10], 10));
    assert_eq!(kept(&parsed[2]).await, ((1..=10).collect(), 10));
    assert_eq!(kept(&parsed[3]).await, (vec![], 0));
    for name in ["short:m", "one:m", "h:m"] {
        let ttl = redis
            .cmd(&["PTTL", &format!("{pfx}.stream.{{{name}}}")])
            .await
            .unwrap();
        assert!(
            matches!(ttl, Reply::Int(t) if t > 590_000 && t <= 600_000),
            "{name}: {ttl:?}"
        );
    }
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_publication_fails_alone_in_its_batch() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("broken");
    let engine = start(&standalone(&redis.url(), &pfx), Recorder::new("p")).await;
    // A meta key of the wrong type: that channel's publish script step fails.
    redis
        .cmd(&["SET", &format!("{pfx}.meta.{{h:broken}}"), "x"])
        .await
        .unwrap();
    let (fine, broken) = (channel("h:fine"), channel("h:broken"));
    let publishes = (0..50).map(|n| {
        let ch = if n % 5 == 0 { &broken } else { &fine };
        let engine = &engine;
        async move {
            let r = engine
                .publish(ch, data(&n.to_string()), PublishOptions::default())
                .await;
            (ch.name(), r)
        }
    });
    let mut offsets = Vec::new();
    for (name, r) in join_all(publishes).await {
        match (name, r) {
            ("h:broken", Err(EngineError::Internal(m))) => assert!(m.contains("WRONGTYPE"), "{m}"),
            ("h:fine", Ok(p)) => offsets.push(p.offset),
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(offsets, (1..=40).collect::<Vec<_>>());
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_dying_mid_stream_fails_every_waiting_publish_and_hangs_none() {
    let mut redis = RedisServer::start().await.unwrap();
    let engine = start(
        &standalone(&redis.url(), &prefix("dying")),
        Recorder::new("p"),
    )
    .await;
    let ch = channel("h:dying");
    let succeeded = AtomicUsize::new(0);
    let publishing = stream::iter(0..20_000)
        .map(|i| {
            let (engine, ch, succeeded) = (&engine, &ch, &succeeded);
            async move {
                let r = engine
                    .publish(ch, data(&i.to_string()), PublishOptions::default())
                    .await;
                if r.is_ok() {
                    succeeded.fetch_add(1, Ordering::SeqCst);
                }
                r
            }
        })
        .buffered(512)
        .collect::<Vec<_>>();
    let killing = async {
        eventually(WAIT, "publishes under way", || {
            succeeded.load(Ordering::SeqCst) >= 500
        })
        .await;
        redis.stop();
    };
    let (results, ()) = tokio::time::timeout(WAIT, async { tokio::join!(publishing, killing) })
        .await
        .expect("every publish answered");
    let failed: Vec<&EngineError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!failed.is_empty(), "some publishes met the dead redis");
    for e in &failed {
        assert!(matches!(e, EngineError::Unavailable(_)), "{e}");
    }
    // Those that made it kept their turn.
    let offsets: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|p| p.offset))
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in order");
    close_quickly(engine).await;
}

async fn close_quickly(engine: Engine) {
    tokio::time::timeout(WAIT, engine.close())
        .await
        .expect("closes");
}

/// A slot moves to another master after the publisher last saw the slots: a
/// call made for its old node carries publications of that slot beside
/// others. Those the node reached no longer serves are sent again on their
/// own, and every publish succeeds, each channel's offsets gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_under_a_batch_fails_no_publication() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let config = recorder::cluster(cluster.seeds(), &prefix("moved"));
    let metrics = herald_core::Metrics::new();
    let publisher = start_with(&config, Recorder::new("p"), metrics.clone()).await;
    // The first master serves slots 0-5460 (see `RedisCluster::start`).
    let on_first = |name: &String| fred::util::redis_keyslot(name.as_bytes()) <= 5460;
    let names: Vec<String> = (0..)
        .map(|i| format!("h:mv{i}"))
        .filter(on_first)
        .take(20)
        .collect();
    let moved = fred::util::redis_keyslot(names[0].as_bytes()).to_string();
    let target = cluster.nodes()[1].cmd(&["CLUSTER", "MYID"]).await.unwrap();
    let target = target.text().unwrap().to_owned();
    for node in cluster.nodes() {
        let reply = node
            .cmd(&["CLUSTER", "SETSLOT", &moved, "NODE", &target])
            .await
            .unwrap();
        assert_eq!(reply.text(), Some("OK"), "{reply:?}");
    }

    let rounds = 5;
    let parsed: Vec<_> = names.iter().map(|c| channel(c)).collect();
    let publishes = (0..rounds).flat_map(|_| parsed.iter());
    let results = join_all(publishes.map(|ch| {
        let publisher = &publisher;
        async move {
            let position = publisher
                .publish(ch, data("{}"), PublishOptions::default())
                .await;
            (ch.name().to_owned(), position)
        }
    }))
    .await;
    let mut offsets: HashMap<String, Vec<u64>> = HashMap::new();
    for (name, position) in results {
        let position = position.unwrap_or_else(|e| panic!("{name}: {e}"));
        offsets.entry(name).or_default().push(position.offset);
    }
    for (name, mut got) in offsets {
        got.sort_unstable();
        assert_eq!(got, (1..=rounds).collect::<Vec<u64>>(), "{name}");
    }
    let (calls, _) = batches(&metrics);
    let count = names.len() as u64 * rounds;
    assert!(calls < count as f64, "{calls} script calls for {count}");
    publisher.close().await;
}
