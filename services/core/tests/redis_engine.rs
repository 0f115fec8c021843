//! The Redis engine's API against a real standalone `redis-server`: publish
//! and history, presence with expiry, join/leave, control commands, node
//! discovery and debounced unsubscribes.

#[path = "support/recorder.rs"]
mod recorder;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald_core::control::Command;
use herald_core::engine::{HistoryQuery, PresenceStats, PublishOptions};
use herald_core::{ClientInfo, StreamPosition};
use herald_testkit::resp::Reply;
use herald_testkit::RedisServer;
use recorder::*;

const WAIT: Duration = Duration::from_secs(30);

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: None,
        chan_info: None,
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_history_offsets_and_epoch() {
    let redis = RedisServer::start().await.unwrap();
    let engine = start(
        &standalone(&redis.url(), &prefix("history")),
        Recorder::new("a"),
    )
    .await;
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
    assert_eq!(
        all.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all.publications[0].data.get(), data_text("1"));
    assert!(all.publications[0].time > 0);

    let since = StreamPosition {
        offset: 2,
        epoch: last.epoch.clone(),
    };
    let q = HistoryQuery {
        since: Some(since.clone()),
        limit: Some(2),
        reverse: false,
    };
    let h = engine.history(&ch, q).await.unwrap();
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [3, 4]
    );
    let q = HistoryQuery {
        since: Some(since),
        limit: Some(2),
        reverse: true,
    };
    let h = engine.history(&ch, q).await.unwrap();
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [5, 4]
    );
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
    let h = engine
        .history(
            &ch,
            HistoryQuery {
                since: Some(stale),
                ..Default::default()
            },
        )
        .await
        .unwrap();
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
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [4, 5],
        "bounded by history_size"
    );

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
    assert_eq!(
        engine
            .history(&ch, HistoryQuery::default())
            .await
            .unwrap()
            .position
            .offset,
        6
    );
    engine.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_expires_unrefreshed_entries() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("presence");
    let engine = start(&standalone(&redis.url(), &pfx), Recorder::new("a")).await;
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

    // c2 was not refreshed in time: its expiry lies in the past.
    let expiry = format!("{pfx}.presence_exp.{{pres:room}}");
    redis.cmd(&["ZADD", &expiry, "1", "c2"]).await.unwrap();
    let stats = engine.presence_stats(&ch).await.unwrap();
    assert_eq!(
        stats,
        PresenceStats {
            num_clients: 1,
            num_users: 1
        }
    );
    assert_eq!(engine.presence(&ch).await.unwrap().len(), 1);
    // Refreshing keeps an entry alive and the keys carry a TTL.
    engine.add_presence(&ch, &info("u1", "c1")).await.unwrap();
    let ttl = redis
        .cmd(&["TTL", &format!("{pfx}.presence.{{pres:room}}")])
        .await
        .unwrap();
    assert!(matches!(ttl, Reply::Int(t) if t > 0 && t <= 60), "{ttl:?}");
    engine.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_control_and_nodes_reach_every_node() {
    let redis = RedisServer::start().await.unwrap();
    let config = standalone(&redis.url(), &prefix("control"));
    let (ra, rb) = (Recorder::new("a"), Recorder::new("b"));
    ra.set_local_channels(&[("x", 2), ("y", 1)]);
    rb.set_local_channels(&[("x", 3)]);
    let a = start(&config, ra.clone()).await;
    let b = start(&config, rb.clone()).await;

    let uids: Vec<String> = a
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.uid)
        .collect();
    assert_eq!(uids, ["a", "b"]);
    let channels = b.channels().await.unwrap();
    assert_eq!(channels, HashMap::from([("x".into(), 5), ("y".into(), 1)]));

    let cmd = Command::Disconnect {
        user: "42".into(),
        client: None,
        code: 3000,
        reason: "bye".into(),
    };
    a.publish_control(&cmd).await.unwrap();
    for rec in [&ra, &rb] {
        eventually(WAIT, "control command", || rec.controls() == [cmd.clone()]).await;
    }

    let ch = channel("pres:jl");
    a.subscribe(&ch).await.unwrap();
    b.subscribe(&ch).await.unwrap();
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
    for rec in [&ra, &rb] {
        eventually(WAIT, "join, publication, leave", || {
            rec.seen("pres:jl").len() >= 3
        })
        .await;
        assert_eq!(rec.seen("pres:jl"), want);
    }

    b.close().await;
    let uids: Vec<String> = a
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.uid)
        .collect();
    assert_eq!(uids, ["a"], "a closed node leaves at once");
    a.close().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_is_debounced_and_rechecked() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("unsub");
    let rec = Recorder::new("a");
    let engine = start(&standalone(&redis.url(), &pfx), rec.clone()).await;
    let numsub = |name: &str| {
        let name = format!("{pfx}.pub.{{{name}}}");
        let redis = &redis;
        async move {
            match redis.cmd(&["PUBSUB", "NUMSUB", &name]).await.unwrap() {
                Reply::Array(v) => v[1].int().unwrap(),
                other => panic!("{other:?}"),
            }
        }
    };
    let (kept, again, gone) = (channel("h:kept"), channel("h:again"), channel("h:gone"));
    for ch in [&kept, &again, &gone] {
        engine.subscribe(ch).await.unwrap();
        assert_eq!(numsub(ch.name()).await, 1);
    }
    rec.set_needed("h:kept", true);
    engine.unsubscribe("h:kept").await.unwrap();
    engine.unsubscribe("h:again").await.unwrap();
    engine.subscribe(&again).await.unwrap();
    engine.unsubscribe("h:gone").await.unwrap();
    assert_eq!(numsub("h:gone").await, 1, "debounced, not immediate");

    let deadline = Instant::now() + WAIT;
    while numsub("h:gone").await != 0 {
        assert!(Instant::now() < deadline, "h:gone never unsubscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both others passed their deadline too: still subscribed and delivering.
    for ch in [&kept, &again] {
        assert_eq!(numsub(ch.name()).await, 1, "{}", ch.name());
        engine
            .publish(ch, data("after"), PublishOptions::default())
            .await
            .unwrap();
    }
    eventually(WAIT, "delivery to kept channels", || {
        rec.offsets("h:kept") == [1] && rec.offsets("h:again") == [1]
    })
    .await;
    engine.close().await;
}
