//! Redis restarted (its data lost) under a gateway with connected subscribers:
//! readiness follows Redis, the gateway restores its pub/sub subscriptions, a
//! channel without history keeps delivering on the same connection, and a
//! channel with history (its epoch gone with the data) closes its clients
//! with 3010 so they recover and learn `recovered: false`.

#[path = "support/faults.rs"]
mod faults;

use faults::*;
use herald_testkit::RedisServer;
use serde_json::json;
use tokio::time::Instant;

const PLAIN: &str = "plain-restart";
const FEED: &str = "feed:restart";
const RESTORED: &str = "subscriptions restored";

#[tokio::test]
async fn a_restarted_redis_gets_the_subscriptions_back_and_history_clients_recover() {
    let mut redis = RedisServer::start().await.unwrap();
    // Personal channels have history: with them, every connection would be closed 3010.
    let impersonal = ("HERALD_NAMESPACES__USER__PERSONAL", "false");
    let debug = "info,herald_core::engine::redis::pubsub::task=debug";
    let gateway = node("gateway", &redis.url(), &[impersonal, ("RUST_LOG", debug)]).await;
    let publisher = node("publisher", &redis.url(), &[impersonal]).await;

    let mut plain = connect(&gateway, "plain").await;
    subscribe(&mut plain, PLAIN, json!({})).await;
    let mut feed = connect(&gateway, "feed").await;
    let epoch = subscribe(&mut feed, FEED, json!({})).await["epoch"].clone();
    publisher.publish(PLAIN, json!({ "n": 1 })).await.unwrap();
    publish_until_accepted(&publisher, FEED, 1).await;
    assert_eq!(plain.next_push().await.unwrap()["pub"]["data"]["n"], 1);
    assert_eq!(take_publications(&mut feed, FEED, 1).await, [(1, 1)]);
    let restored_before = gateway.log().matches(RESTORED).count();

    redis.stop();
    let stopped = Instant::now();
    let unready = await_readyz(&gateway, 503, stopped).await;
    redis.start_again().await.unwrap();
    let started = Instant::now();
    let ready = await_readyz(&gateway, 200, started).await;
    await_readyz(&publisher, 200, started).await;
    assert!(
        gateway.log().matches(RESTORED).count() > restored_before,
        "no resubscription logged:\n{}",
        gateway.log()
    );
    println!("redis restart: /readyz 503 after {unready:?}, 200 again {ready:?} after restart");

    // Pub/sub is back: the same connection receives, nothing was closed.
    publisher.publish(PLAIN, json!({ "n": 2 })).await.unwrap();
    let push = plain
        .next_push()
        .await
        .unwrap_or_else(|e| panic!("{e}; gateway log:\n{}", gateway.log()));
    assert_eq!(push["pub"]["data"]["n"], 2, "{push}");

    // The history channel starts over in a new epoch: its clients must recover.
    publish_until_accepted(&publisher, FEED, 2).await;
    let (code, _) = feed.closed().await.unwrap();
    assert_eq!(code, 3010);
    let mut back = connect(&gateway, "feed").await;
    let reply = subscribe(
        &mut back,
        FEED,
        json!({ "recover": true, "offset": 1, "epoch": epoch }),
    )
    .await;
    // `recovered: false` is left out of the reply, as Centrifugo does.
    assert_ne!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["was_recovering"], true, "{reply}");
    assert_ne!(reply["epoch"], epoch, "{reply}");
    let offset = publish_until_accepted(&publisher, FEED, 3).await.0;
    assert_eq!(take_publications(&mut back, FEED, 1).await, [(offset, 3)]);
}
