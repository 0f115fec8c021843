//! Redis behind a link that silently drops every packet (a veth pair into a
//! network namespace, iptables DROP both ways): `/readyz` turns 503 within the
//! probe window, publishes fail within the command timeout, connected clients
//! stay connected; once the link heals, readiness returns, new publications
//! flow and a client that recovers gets exactly the accepted ones it missed.

#[path = "support/faults.rs"]
mod faults;

use std::time::Duration;

use faults::*;
use herald_testkit::netns::Netns;
use serde_json::json;
use tokio::time::Instant;

const CHANNEL: &str = "feed:blackhole";

/// Two probe periods of one second, plus one for a probe publish that hangs.
const UNREADY_WITHIN: Duration = Duration::from_secs(4);
/// The engine's command timeout (2 s) plus its hard deadline's margin (1 s).
const PUBLISH_ANSWERS_WITHIN: Duration = Duration::from_millis(3500);

#[tokio::test]
async fn blackholed_redis_fails_fast_then_recovers_without_loss_or_duplicates() {
    let net = Netns::create().unwrap();
    let redis = net.start_redis().await.unwrap();
    let gateway = node("gateway", &redis.url(), &[]).await;
    let publisher = node("publisher", &redis.url(), &[]).await;

    // placed[offset] = n of the publication the API put there.
    let mut placed = vec![u64::MAX];
    let mut stays = connect(&gateway, "stays").await;
    let mut leaves = connect(&gateway, "leaves").await;
    let epoch = subscribe(&mut stays, CHANNEL, json!({})).await["epoch"].clone();
    subscribe(&mut leaves, CHANNEL, json!({})).await;
    for n in 1..=5 {
        placed.push(n);
        assert_eq!(publish_until_accepted(&publisher, CHANNEL, n).await, (n, 0));
    }
    let before = take_publications(&mut leaves, CHANNEL, 5).await;
    assert_exactly_once_in_order("leaves", &before, 1, &placed);
    drop(leaves);
    for n in 6..=8 {
        placed.push(n);
        assert_eq!(publish_until_accepted(&publisher, CHANNEL, n).await, (n, 0));
    }

    net.blackhole().unwrap();
    let cut = Instant::now();
    let (gateway_503, publisher_503, attempt) = tokio::join!(
        await_readyz(&gateway, 503, cut),
        await_readyz(&publisher, 503, cut),
        try_publish(&publisher, CHANNEL, 9),
    );
    let (status, reply, took) = attempt;
    assert_eq!(status, 503, "a publish during the cut: {reply}");
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert!(
        took < PUBLISH_ANSWERS_WITHIN,
        "publish answered after {took:?}"
    );
    assert!(gateway_503 < UNREADY_WITHIN && publisher_503 < UNREADY_WITHIN);
    // Once unready, a publish is refused, again within the command timeout.
    let (status, reply, took_unready) = try_publish(&publisher, CHANNEL, 10).await;
    assert_eq!(status, 503, "{reply}");
    assert!(took_unready < PUBLISH_ANSWERS_WITHIN, "{took_unready:?}");
    // The connected client is still served (no close, its commands answered).
    let pong = stays.command(json!({ "ping": {} })).await.unwrap();
    assert!(pong.get("error").is_none(), "{pong}");

    net.heal();
    let healed = Instant::now();
    let (gateway_200, publisher_200) = tokio::join!(
        await_readyz(&gateway, 200, healed),
        await_readyz(&publisher, 200, healed),
    );
    println!(
        "blackhole: /readyz 503 after {gateway_503:?} (gateway) / {publisher_503:?} (publisher); \
         publish answered 503 after {took:?} (then {took_unready:?} once unready); \
         /readyz 200 after {gateway_200:?} / {publisher_200:?} from heal"
    );

    // The failed attempts are retried with their keys: whichever attempt Redis
    // ran first holds the position, the other publishes nothing.
    let mut answered = Vec::new();
    for n in 9..=13 {
        let (offset, _) = publish_until_accepted(&publisher, CHANNEL, n).await;
        answered.push((offset, n));
    }
    answered.sort();
    for (offset, n) in &answered {
        assert_eq!(
            *offset as usize,
            placed.len(),
            "offsets contiguous: {answered:?}"
        );
        placed.push(*n);
    }
    let last = placed.len() as u64 - 1;
    let sentinel = last + 1;
    placed.push(sentinel);
    assert_eq!(
        publish_until_accepted(&publisher, CHANNEL, sentinel).await,
        (sentinel, 0)
    );

    let live = take_publications(&mut stays, CHANNEL, sentinel as usize).await;
    assert_exactly_once_in_order("stays", &live, 1, &placed);

    let mut back = connect(&gateway, "leaves").await;
    let missed = recover(&mut back, CHANNEL, 5, &epoch).await;
    assert_eq!(missed.len() as u64, sentinel - 5, "{missed:?}");
    assert_exactly_once_in_order("recovered", &missed, 6, &placed);
    // Each readiness change is logged, the drop as well as the return.
    for h in [&gateway, &publisher] {
        let log = h.log();
        let down = log.find("redis engine not ready").expect("the drop logged");
        assert!(
            log[down..].contains("redis engine ready"),
            "the return logged"
        );
    }
}
