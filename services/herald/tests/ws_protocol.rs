//! The Centrifugo protocol over WebSocket end to end: connect and tokens,
//! server-side and client-side subscriptions, ordering across a subscribe, slow
//! clients and protocol pings. The WebSocket layer under it (upgrades, frames,
//! control frames) is in `ws_framing.rs`.

use herald_testkit::client::Client;
use herald_testkit::herald::{now, token, token_with_secret, Herald};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn tokens_decide_how_connect_ends() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut c = Client::open(&h.ws_url()).await.unwrap();
    let expired = token(&json!({"sub": "1", "exp": now() - 10}));
    let reply = c
        .command(json!({"connect": {"token": expired}}))
        .await
        .unwrap();
    assert_eq!(
        reply["error"]["code"], 109,
        "expired token is a reply, not a close"
    );
    let forged = token_with_secret(&json!({"sub": "1"}), "other");
    c.send_raw(&json!({"id": 9, "connect": {"token": forged}}).to_string())
        .await
        .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 3500);

    let mut c = Client::open(&h.ws_url()).await.unwrap();
    c.send_raw(r#"{"id":1,"connect":{}}"#).await.unwrap();
    assert_eq!(
        c.closed().await.unwrap().0,
        3501,
        "no token, no anonymous access"
    );

    let mut c = Client::open(&h.ws_url()).await.unwrap();
    c.send_raw(r#"{"id":1,"subscribe":{"channel":"stock:A"}}"#)
        .await
        .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 3501, "command before connect");
}

#[tokio::test]
async fn live_publications_follow_the_subscribe_reply_exactly_once() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("5")).await.unwrap();
    let publisher = async {
        for n in 1..=300 {
            h.publish("stock:RACE", json!({ "n": n })).await.unwrap();
        }
    };
    let subscriber = async {
        c.command(json!({"subscribe": {"channel": "stock:RACE", "recover": false}}))
            .await
            .unwrap()
    };
    let ((), reply) = tokio::join!(publisher, subscriber);
    let start = reply["subscribe"]["offset"].as_u64().unwrap_or(0);
    let mut expected = start + 1;
    while expected <= 300 {
        let push = c.next_push().await.unwrap();
        assert_eq!(
            push["pub"]["offset"], expected,
            "in order, no gaps, no duplicates"
        );
        expected += 1;
    }
}

#[tokio::test]
async fn a_channel_with_many_subscribers_reaches_each_in_order_exactly_once() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut clients = Vec::new();
    for user in 0..100 {
        let (mut c, _) = Client::connect(&h.ws_url(), &h.token(&user.to_string()))
            .await
            .unwrap();
        c.command(json!({"subscribe": {"channel": "stock:BIG"}}))
            .await
            .unwrap();
        clients.push(c);
    }
    let (mut late, _) = Client::connect(&h.ws_url(), &h.token("late"))
        .await
        .unwrap();
    let publisher = async {
        for n in 1..=200 {
            h.publish("stock:BIG", json!({ "n": n })).await.unwrap();
        }
    };
    let subscriber = async {
        late.command(json!({"subscribe": {"channel": "stock:BIG", "recover": false}}))
            .await
            .unwrap()
    };
    let ((), reply) = tokio::join!(publisher, subscriber);
    let start = reply["subscribe"]["offset"].as_u64().unwrap_or(0);
    for expected in start + 1..=200 {
        assert_eq!(late.next_push().await.unwrap()["pub"]["offset"], expected);
    }
    for c in &mut clients {
        for expected in 1..=200 {
            assert_eq!(c.next_push().await.unwrap()["pub"]["offset"], expected);
        }
    }
}

#[tokio::test]
async fn slow_clients_are_closed_and_others_keep_receiving() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_CLIENT__QUEUE_SIZE", "8"),
            ("HERALD_CLIENT__WRITE_TIMEOUT", "30s"),
        ],
    )
    .await
    .unwrap();
    let (mut slow, _) = Client::connect(&h.ws_url(), &h.token("slow"))
        .await
        .unwrap();
    slow.command(json!({"subscribe": {"channel": "stock:FLOOD"}}))
        .await
        .unwrap();
    let (mut fast, _) = Client::connect(&h.ws_url(), &h.token("fast"))
        .await
        .unwrap();
    fast.command(json!({"subscribe": {"channel": "stock:FLOOD"}}))
        .await
        .unwrap();
    let blob = "x".repeat(16 * 1024);
    let mut received = 0;
    let mut counted = false;
    for n in 0..2000 {
        h.publish("stock:FLOOD", json!({ "n": n, "blob": blob }))
            .await
            .unwrap();
        fast.next_push().await.unwrap();
        received += 1;
        // Counted when the cut-off happens, not when the close handshake ends
        // (the slow client reads nothing, so that waits for the write timeout).
        if h.metrics()
            .await
            .contains(r#"herald_slow_client_cutoffs_total{transport="websocket"} 1"#)
        {
            counted = true;
            break;
        }
    }
    assert!(counted, "no cut-off counted after {received} publications");
    let (code, reason) = slow.closed().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (3008, "slow"),
        "after {received} publications"
    );
    h.publish("stock:FLOOD", json!("still here")).await.unwrap();
    loop {
        let push = fast.next_push().await.unwrap();
        if push["pub"]["data"] == "still here" {
            break;
        }
    }
}

#[tokio::test]
async fn missing_pongs_close_with_3012() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_CLIENT__PING_INTERVAL", "300ms"),
            ("HERALD_CLIENT__PONG_TIMEOUT", "200ms"),
        ],
    )
    .await
    .unwrap();
    let (mut polite, connected) = Client::connect(&h.ws_url(), &h.token("p")).await.unwrap();
    assert_eq!(connected["pong"], true);
    let (mut silent, _) = Client::connect(&h.ws_url(), &h.token("s")).await.unwrap();
    silent.answer_pings = false;
    let (closed, answered) = tokio::join!(silent.closed(), polite.wait_pings(3));
    assert_eq!(closed.unwrap().0, 3012);
    answered.unwrap();
    let reply = polite.command(json!({"ping": {}})).await.unwrap();
    assert!(
        reply.get("ping").is_some(),
        "still connected after answering pings: {reply}"
    );
}
