//! Subscribing to a channel that the node already receives through Redis, while
//! publications stream in: the subscribe reply's position comes from the
//! node's own delivery, so this checks that it lines up exactly with the live
//! publications that follow, for fresh subscriptions and for recoveries, and
//! that at rest it is exactly the channel's last offset.

use std::sync::atomic::{AtomicBool, Ordering};

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::RedisServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const CHANNEL: &str = "feed:race";
const ROUNDS: usize = 15;
const PUSHES_PER_ROUND: u64 = 3;

#[tokio::test]
async fn joining_a_received_channel_mid_stream_loses_and_repeats_nothing() {
    let redis = RedisServer::start().await.unwrap();
    let url = redis.url();
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_ENGINE__REDIS_URL", &url),
            ("HERALD_NAMESPACES__FEED__HISTORY_SIZE", "1000"),
            ("HERALD_NAMESPACES__FEED__HISTORY_TTL", "60s"),
        ],
    )
    .await
    .unwrap();
    // Keeps the node subscribed to the channel for the whole test.
    let mut anchor = connect(&h, "anchor").await;
    subscribe(&mut anchor, json!({})).await;

    let done = AtomicBool::new(false);
    let publisher = async {
        let mut published = 0u64;
        while !done.load(Ordering::Relaxed) {
            h.publish(CHANNEL, json!({ "n": published })).await.unwrap();
            published += 1;
        }
        published
    };
    let rounds = async {
        for round in 0..ROUNDS {
            let user = format!("joiner-{round}");
            let mut fresh = connect(&h, &user).await;
            let reply = subscribe(&mut fresh, json!({})).await;
            let start = reply["offset"].as_u64().expect("an offset");
            let epoch = reply["epoch"].as_str().expect("an epoch").to_owned();
            let last = expect_contiguous(&mut fresh, start, &[]).await;

            let mut back = connect(&h, &user).await;
            let reply = subscribe(
                &mut back,
                json!({"recover": true, "offset": last, "epoch": epoch}),
            )
            .await;
            assert_eq!(reply["recovered"], true, "round {round}: {reply}");
            let replayed = reply["publications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            expect_contiguous(&mut back, last, &replayed).await;
        }
        done.store(true, Ordering::Relaxed);
    };
    let (published, ()) = tokio::join!(publisher, rounds);
    assert!(published >= ROUNDS as u64 * PUSHES_PER_ROUND);

    // At rest, a subscribe answers exactly the last offset the node delivered.
    anchor
        .wait_for(|m| m["push"]["pub"]["offset"] == published)
        .await
        .unwrap();
    let mut late = connect(&h, "late").await;
    let reply = subscribe(&mut late, json!({})).await;
    assert_eq!(reply["offset"], published, "{reply}");
    let epoch = reply["epoch"].clone();
    let reply = subscribe(
        &mut connect(&h, "anchor").await,
        json!({"recover": true, "offset": published, "epoch": epoch}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["offset"], published, "{reply}");
    assert!(reply
        .get("publications")
        .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)));
}

/// A connected client of `user`.
async fn connect(h: &Herald, user: &str) -> Client {
    Client::connect(&h.ws_url(), &h.token(user))
        .await
        .unwrap()
        .0
}

async fn subscribe(client: &mut Client, extra: Value) -> Value {
    let mut request = json!({"channel": CHANNEL});
    for (k, v) in extra.as_object().expect("an object") {
        request[k] = v.clone();
    }
    let reply = client
        .command(json!({ "subscribe": request }))
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    reply["subscribe"].clone()
}

/// Checks that `replayed` and then the next pushes continue `after` one offset
/// at a time; returns the last offset seen.
async fn expect_contiguous(client: &mut Client, after: u64, replayed: &[Value]) -> u64 {
    let mut expected = after + 1;
    for publication in replayed {
        assert_eq!(publication["offset"], expected, "replayed in order");
        expected += 1;
    }
    while expected <= after + PUSHES_PER_ROUND {
        let push = client.next_push().await.unwrap();
        assert_eq!(push["channel"], CHANNEL);
        assert_eq!(
            push["pub"]["offset"], expected,
            "no gap and no repeat after the subscribe reply"
        );
        expected += 1;
    }
    expected - 1
}
