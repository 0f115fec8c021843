//! Many commands at once: the replies to a client's own commands never count
//! as the client being slow, over WebSocket (one frame of newline-joined
//! commands, as centrifuge-js sends its pending subscribes after connect) and
//! over SSE (many channels in `channels=`). Commands per frame have a clear cap.

use std::collections::BTreeSet;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::sse::SseClient;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// More commands than the default outbox holds (`client.queue_size`, 256).
const MANY: usize = 300;

#[tokio::test]
async fn one_frame_of_300_subscribes_gets_300_replies_and_stays_connected() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("batch"))
        .await
        .unwrap();
    let frame: Vec<String> = (0..MANY)
        .map(|i| json!({ "id": 100 + i, "subscribe": { "channel": format!("stock:batch{i}") } }))
        .map(|v| v.to_string())
        .collect();
    c.send_raw(&frame.join("\n")).await.unwrap();
    for i in 0..MANY {
        let id = (100 + i) as u64;
        let reply = c
            .wait_for(|m| m.get("id").and_then(Value::as_u64) == Some(id))
            .await
            .unwrap_or_else(|e| panic!("reply {id}: {e}"));
        assert!(reply.get("subscribe").is_some(), "{reply}");
    }
    let ping = c.command(json!({ "ping": {} })).await.unwrap();
    assert!(ping.get("ping").is_some(), "still connected: {ping}");
    h.publish("stock:batch299", json!({"n": 1})).await.unwrap();
    let push = c.next_push().await.unwrap();
    assert_eq!(push["channel"], "stock:batch299");
}

#[tokio::test]
async fn a_frame_over_the_command_cap_is_closed_with_a_clear_reason() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("flood"))
        .await
        .unwrap();
    let frame: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":{},"ping":{{}}}}"#, i + 10))
        .collect();
    c.send_raw(&frame.join("\n")).await.unwrap();
    let (code, reason) = c.closed().await.unwrap();
    assert_eq!((code, reason.as_str()), (3501, "too many commands"));
}

#[tokio::test]
async fn sse_with_300_channels_gets_every_subscription_and_stays_open() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let channels: Vec<String> = (0..MANY).map(|i| format!("stock:sse{i}")).collect();
    let url = format!(
        "http://{}/connection/sse?token={}&channels={}",
        h.client_addr,
        h.token("many"),
        channels.join(",")
    );
    let mut sse = SseClient::open(&url, None).await.unwrap();
    let connect = sse.next().await.unwrap();
    assert!(connect.data.get("connect").is_some(), "{}", connect.data);
    let mut subscribed = BTreeSet::new();
    while subscribed.len() < MANY {
        let e = sse.next().await.unwrap();
        assert!(e.data.get("disconnect").is_none(), "closed: {}", e.data);
        if e.data.get("subscribe").is_some() {
            subscribed.insert(e.data["channel"].as_str().unwrap().to_owned());
        }
    }
    h.publish("stock:sse299", json!({"n": 1})).await.unwrap();
    let event = sse.next().await.unwrap();
    assert_eq!(event.data["channel"], "stock:sse299", "{}", event.data);
}
