//! What only the Redis engine does, against a real standalone `redis-server`:
//! presence entries expire unless refreshed, keys carry a TTL, unsubscribes are
//! debounced and re-checked. The contract every engine keeps is in
//! `engine_conformance.rs`.

#[path = "support/recorder.rs"]
mod recorder;

use std::time::{Duration, Instant};

use herald_core::engine::{PresenceStats, PublishOptions};
use herald_core::ClientInfo;
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
async fn presence_expires_unrefreshed_entries() {
    let redis = RedisServer::start().await.unwrap();
    let pfx = prefix("presence");
    let engine = start(&standalone(&redis.url(), &pfx), Recorder::new("a")).await;
    let ch = channel("pres:room");
    for (user, client) in [("u1", "c1"), ("u1", "c2"), ("u2", "c3")] {
        engine.add_presence(&ch, &info(user, client)).await.unwrap();
    }
    engine.remove_presence(&ch, "c3").await.unwrap();

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
