//! Recovery reads of the Redis engine against a real `redis-server`: many clients of one
//! channel recovering at once (the clients of a lost node coming back) cost Redis a handful of
//! history reads, not one each (counted with `INFO commandstats`), and each still gets exactly
//! the publications after its own position.

#[path = "support/recorder.rs"]
mod recorder;

use futures_util::future::join_all;
use herald_core::engine::{HistoryQuery, PublishOptions};
use herald_core::publication::StreamPosition;
use herald_testkit::resp::Reply;
use herald_testkit::RedisServer;
use recorder::*;

/// Calls of the script runner (`EVALSHA`: publish and history scripts) so far.
async fn evalsha_calls(redis: &RedisServer) -> u64 {
    let Reply::Text(info) = redis.cmd(&["INFO", "commandstats"]).await.unwrap() else {
        panic!("INFO did not answer text");
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recoveries_of_one_channel_share_their_reads() {
    const CLIENTS: u64 = 200;
    const PUBLISHED: u64 = 50;
    const LIMIT: usize = 30;
    let redis = RedisServer::start().await.unwrap();
    let engine = start(
        &standalone(&redis.url(), &prefix("recover")),
        Recorder::new("a"),
    )
    .await;
    let ch = channel("h:hot");
    let mut epoch = String::new();
    for n in 1..=PUBLISHED {
        let p = engine
            .publish(&ch, data(&n.to_string()), PublishOptions::default())
            .await
            .unwrap();
        epoch = p.epoch;
    }

    let before = evalsha_calls(&redis).await;
    // Client k last saw offset k % PUBLISHED and may get up to LIMIT publications.
    let reads = (0..CLIENTS).map(|k| {
        let (engine, ch, epoch) = (&engine, &ch, epoch.clone());
        async move {
            let since = StreamPosition {
                offset: k % PUBLISHED,
                epoch,
            };
            let query = HistoryQuery {
                since: Some(since),
                limit: Some(LIMIT),
                reverse: false,
            };
            (k, engine.history(ch, query).await.unwrap())
        }
    });
    let results = join_all(reads).await;
    let used = evalsha_calls(&redis).await - before;

    for (k, h) in results {
        let after = k % PUBLISHED;
        let want: Vec<u64> = (after + 1..=PUBLISHED).take(LIMIT).collect();
        let got: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
        assert_eq!(got, want, "client {k} recovering after offset {after}");
        let texts: Vec<String> = h
            .publications
            .iter()
            .map(|p| p.data.get().to_owned())
            .collect();
        let want_texts: Vec<String> = want.iter().map(|n| data_text(&n.to_string())).collect();
        assert_eq!(texts, want_texts, "client {k}: the publications themselves");
        assert_eq!(
            (h.position.offset, h.position.epoch.as_str()),
            (PUBLISHED, epoch.as_str())
        );
    }
    // One read per window; the reads all start within a few windows of each other.
    assert!(
        used <= 10,
        "{CLIENTS} concurrent recoveries took {used} history reads"
    );
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_from_another_epoch_gets_nothing_while_sharing_the_read() {
    let redis = RedisServer::start().await.unwrap();
    let engine = start(
        &standalone(&redis.url(), &prefix("epoch")),
        Recorder::new("a"),
    )
    .await;
    let ch = channel("h:epoch");
    let mut epoch = String::new();
    for n in 1..=5 {
        epoch = engine
            .publish(&ch, data(&n.to_string()), PublishOptions::default())
            .await
            .unwrap()
            .epoch;
    }
    let query = |epoch: &str| HistoryQuery {
        since: Some(StreamPosition {
            offset: 2,
            epoch: epoch.to_owned(),
        }),
        limit: Some(10),
        reverse: false,
    };
    let (same, other) = tokio::join!(
        engine.history(&ch, query(&epoch)),
        engine.history(&ch, query("stale")),
    );
    let offsets: Vec<u64> = same
        .unwrap()
        .publications
        .iter()
        .map(|p| p.offset)
        .collect();
    assert_eq!(offsets, [3, 4, 5]);
    let other = other.unwrap();
    assert!(
        other.publications.is_empty(),
        "a stale epoch recovers nothing"
    );
    assert_eq!(other.position.epoch, epoch);
    engine.close().await;
}
