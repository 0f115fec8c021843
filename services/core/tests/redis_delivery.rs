//! Delivery guarantees of the Redis engine through Redis failures, against a
//! real standalone `redis-server`: gap filling from history, killed subscriber
//! connections, a Redis restart mid-stream, a lagging reader and a stuck Redis
//! noticed by the readiness probe. Plain exactly-once delivery across nodes is
//! part of every engine's contract (`engine_conformance.rs`).

#[path = "support/recorder.rs"]
mod recorder;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald_core::engine::{EngineError, PublishOptions};
use herald_testkit::resp::Reply;
use herald_testkit::RedisServer;
use recorder::*;

const WAIT: Duration = Duration::from_secs(30);

/// Publishes `per_channel` publications into each channel from `engines` concurrently.
async fn publish_many(engines: &[&herald_core::Engine], channels: &[String], per_channel: usize) {
    let tasks = channels.iter().enumerate().map(|(i, name)| async move {
        let ch = channel(name);
        for n in 0..per_channel {
            let engine = engines[(i + n) % engines.len()];
            engine
                .publish(&ch, data(&format!("{name}-{n}")), PublishOptions::default())
                .await
                .unwrap();
        }
    });
    join_all(tasks).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_a_gap_from_history() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("gap");
    let rec = Recorder::new("a");
    let engine = start(&standalone(&redis.url(), &pfx), rec.clone()).await;
    let ch = channel("h:gap");
    engine.subscribe(&ch).await.unwrap();
    engine
        .publish(&ch, data("1"), PublishOptions::default())
        .await
        .unwrap();
    eventually(WAIT, "first publication", || rec.offsets("h:gap") == [1]).await;

    // Offset 2 is stored but its pub/sub message never goes out.
    let meta = format!("{pfx}.meta.{{h:gap}}");
    let stream = format!("{pfx}.stream.{{h:gap}}");
    assert_eq!(
        redis.cmd(&["HINCRBY", &meta, "s", "1"]).await.unwrap(),
        Reply::Int(2)
    );
    let stored = format!("{{\"data\":{}}}", data_text("2"));
    redis
        .cmd(&["XADD", &stream, "2-0", "d", &stored])
        .await
        .unwrap();

    engine
        .publish(&ch, data("3"), PublishOptions::default())
        .await
        .unwrap();
    eventually(WAIT, "the gap filled", || rec.offsets("h:gap").len() >= 3).await;
    assert_exactly_once(&rec, "h:gap", 3);
    assert_eq!(
        rec.data("h:gap"),
        [data_text("1"), data_text("2"), data_text("3")]
    );

    // History gone as well: the handler must hear that publications were lost.
    redis.cmd(&["HINCRBY", &meta, "s", "1"]).await.unwrap();
    redis.cmd(&["DEL", &stream]).await.unwrap();
    engine
        .publish(&ch, data("5"), PublishOptions::default())
        .await
        .unwrap();
    eventually(WAIT, "unrecoverable", || rec.unrecoverable("h:gap")).await;
    engine
        .publish(&ch, data("6"), PublishOptions::default())
        .await
        .unwrap();
    eventually(WAIT, "delivery after the loss", || {
        rec.offsets("h:gap").last() == Some(&6)
    })
    .await;
    assert_eq!(rec.offsets("h:gap"), [1, 2, 3, 6]);
    engine.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_what_killed_subscriber_connections_missed() {
    let redis = RedisServer::start().await.unwrap();
    let config = standalone(&redis.url(), &prefix("kill"));
    let (ra, rb) = (Recorder::new("a"), Recorder::new("b"));
    let (ma, mb) = (herald_core::Metrics::new(), herald_core::Metrics::new());
    let a = start_with(&config, ra.clone(), ma.clone()).await;
    let b = start_with(&config, rb.clone(), mb.clone()).await;
    let channels: Vec<String> = (0..10).map(|i| format!("h:k{i}")).collect();
    for c in &channels {
        a.subscribe(&channel(c)).await.unwrap();
        b.subscribe(&channel(c)).await.unwrap();
    }
    let per_channel = 200;
    let publishers = [&b];
    let publishing = publish_many(&publishers, &channels, per_channel);
    let killing = async {
        for _ in 0..3 {
            eventually(WAIT, "both nodes ready", || a.is_ready() && b.is_ready()).await;
            let killed = redis.kill_subscribers().await.unwrap();
            assert!(killed >= 4, "killed {killed} subscriber connections");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(publishing, killing);
    expect_every_publication(&[&ra, &rb], &channels, per_channel, WAIT).await;
    eventually(WAIT, "ready again", || a.is_ready() && b.is_ready()).await;
    let filled = r#"herald_redis_gap_checks_total{outcome="filled"}"#;
    assert!(
        metric(&ma, filled) + metric(&mb, filled) > 0.0,
        "no gap was filled: the test proved nothing"
    );
    a.close().await;
    b.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart_mid_stream() {
    let mut redis = RedisServer::start().await.unwrap();
    let config = standalone(&redis.url(), &prefix("restart"));
    let (ra, rb) = (Recorder::new("a"), Recorder::new("b"));
    let a = Arc::new(start(&config, ra.clone()).await);
    let b = Arc::new(start(&config, rb.clone()).await);
    let channels: Vec<String> = (0..8).map(|i| format!("h:r{i}")).collect();
    for c in &channels {
        a.subscribe(&channel(c)).await.unwrap();
        b.subscribe(&channel(c)).await.unwrap();
    }
    // Publishes acknowledged by the engine, per channel; refusals must be quick errors.
    let acked: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let publishers: Vec<_> = channels
        .iter()
        .map(|name| {
            let (engine, acked, stop, name) =
                (b.clone(), acked.clone(), stop.clone(), name.clone());
            tokio::spawn(async move {
                let ch = channel(&name);
                let mut n = 0;
                while !stop.is_cancelled() {
                    let id = format!("{name}-{n}");
                    n += 1;
                    let started = Instant::now();
                    match engine
                        .publish(&ch, data(&id), PublishOptions::default())
                        .await
                    {
                        Ok(_) => acked
                            .lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push(data_text(&id)),
                        Err(e) => {
                            assert!(matches!(e, EngineError::Unavailable(_)), "{e}");
                            assert!(started.elapsed() < Duration::from_secs(8), "publish hung");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    let acked_count = || acked.lock().unwrap().values().map(Vec::len).sum::<usize>();
    eventually(WAIT, "publications flowing", || acked_count() > 200).await;

    redis.stop();
    eventually(WAIT, "both nodes not ready", || {
        !a.is_ready() && !b.is_ready()
    })
    .await;
    assert!(matches!(
        a.publish(&channel("h:down"), data("x"), PublishOptions::default())
            .await,
        Err(EngineError::Unavailable(_))
    ));
    redis.start_again().await.unwrap();
    eventually(WAIT, "both nodes ready again", || {
        a.is_ready() && b.is_ready()
    })
    .await;
    let before = acked_count();
    eventually(WAIT, "publications flowing again", || {
        acked_count() > before + 200
    })
    .await;
    stop.cancel();
    for p in publishers {
        p.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    for rec in [&ra, &rb] {
        for c in &channels {
            let want = &acked[c];
            let last = want.last().unwrap().clone();
            eventually(WAIT, "the last acknowledged publication", || {
                rec.data(c).contains(&last)
            })
            .await;
            let got = rec.data(c);
            let unique: HashSet<&String> = got.iter().collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "node {} channel {c}: duplicates",
                rec.uid
            );
            // Redis lost its data, so the epoch changed: every node must have said so.
            assert!(
                rec.unrecoverable(c),
                "node {} channel {c}: epoch change unnoticed",
                rec.uid
            );
            let missing = want.iter().filter(|d| !unique.contains(d)).count();
            assert!(
                missing == 0 || rec.unrecoverable(c),
                "node {} channel {c}: {missing} acknowledged publications lost silently",
                rec.uid
            );
            // Between losses, offsets are consecutive.
            let mut prev: Option<u64> = None;
            for s in rec.seen(c) {
                match s {
                    Seen::Pub { offset, .. } => {
                        if let Some(p) = prev {
                            assert_eq!(offset, p + 1, "node {} channel {c}: out of order", rec.uid);
                        }
                        prev = Some(offset);
                    }
                    Seen::Unrecoverable => prev = None,
                    _ => {}
                }
            }
        }
    }
    a.close().await;
    b.close().await;
}
// The stalled handler blocks one runtime thread on purpose; the others keep the
// engine's connections and the publishers running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_reader_is_caught_up_from_history() {
    let redis = RedisServer::start().await.unwrap();
    let rec = Recorder::new("a");
    let metrics = herald_core::Metrics::new();
    let engine = start_with(
        &standalone(&redis.url(), &prefix("lag")),
        rec.clone(),
        metrics.clone(),
    )
    .await;
    let ch = channel("h:lag");
    engine.subscribe(&ch).await.unwrap();
    // The consumer stalls: the worker's queue and the connection's buffer fill up
    // and the reader skips messages.
    rec.close_gate("h:lag");
    let total = 15_000;
    let publishing = (0..8).map(|t| {
        let (engine, ch) = (&engine, &ch);
        async move {
            for n in 0..total / 8 {
                let d = data(&format!("{t}-{n}"));
                engine
                    .publish(ch, d, PublishOptions::default())
                    .await
                    .unwrap();
            }
        }
    });
    join_all(publishing).await;
    rec.open_gate();
    eventually(WAIT, "every publication", || {
        rec.offsets("h:lag").len() >= total
    })
    .await;
    assert_exactly_once(&rec, "h:lag", total as u64);
    assert!(
        metric(&metrics, "herald_redis_pubsub_lagged_total") > 0.0,
        "the reader never lagged"
    );
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probe_notices_a_stuck_redis() {
    let redis = RedisServer::start().await.unwrap();
    let engine = start(
        &standalone(&redis.url(), &prefix("stuck")),
        Recorder::new("a"),
    )
    .await;
    eventually(WAIT, "ready", || engine.is_ready()).await;
    // Connections stay open but nothing is answered or delivered for a while.
    redis
        .cmd(&["CLIENT", "PAUSE", "4000", "ALL"])
        .await
        .unwrap();
    eventually(WAIT, "not ready while Redis is stuck", || {
        !engine.is_ready()
    })
    .await;
    eventually(WAIT, "ready once Redis answers again", || engine.is_ready()).await;
    let ch = channel("h:stuck");
    engine.subscribe(&ch).await.unwrap();
    engine
        .publish(&ch, data("1"), PublishOptions::default())
        .await
        .unwrap();
    engine.close().await;
}
