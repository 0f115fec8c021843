//! Publication data nests at most 64 levels: deeper data is refused where it
//! enters (the server API answers 400 with error 107) rather than accepted and
//! then lost for one transport; data at the limit reaches WebSocket and SSE
//! subscribers alike.

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::sse::SseClient;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// `depth` nested arrays around a number.
fn nested(depth: usize) -> Value {
    serde_json::from_str(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth))).unwrap()
}

/// Publishes `depth`-deep data with a raw body (no `Value` round trip).
async fn publish_raw(h: &Herald, channel: &str, depth: usize) -> (u16, Value) {
    let body = format!(
        r#"{{"channel":"{channel}","data":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/publish", h.internal_addr))
        .header("X-API-Key", herald_testkit::herald::API_KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn data_deeper_than_64_levels_is_refused_and_64_reaches_every_transport() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let channel = "stock:deep";
    let (mut ws, _) = Client::connect(&h.ws_url(), &h.token("deep-ws"))
        .await
        .unwrap();
    let reply = ws
        .command(json!({ "subscribe": { "channel": channel } }))
        .await
        .unwrap();
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let url = format!(
        "http://{}/connection/sse?token={}&channels={channel}",
        h.client_addr,
        h.token("deep-sse")
    );
    let mut sse = SseClient::open(&url, None).await.unwrap();
    while sse.next().await.unwrap().data.get("subscribe").is_none() {}

    for depth in [65, 1000, 100_000] {
        let (status, body) = publish_raw(&h, channel, depth).await;
        assert_eq!(status, 400, "depth {depth}: {body}");
        assert_eq!(body["error"]["code"], 107, "depth {depth}: {body}");
    }
    let (status, body) = publish_raw(&h, channel, 64).await;
    assert_eq!(status, 200, "{body}");

    let push = ws.next_push().await.unwrap();
    assert_eq!(
        push["pub"]["data"],
        nested(64),
        "the first delivery is the 64-level one"
    );
    let event = sse.next().await.unwrap();
    assert_eq!(event.data["channel"], channel, "{}", event.data);
    assert_eq!(event.data["pub"]["data"], nested(64));
}

#[tokio::test]
async fn batched_publishes_are_held_to_the_same_limit() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let commands = json!({ "commands": [
        { "publish": { "channel": "stock:deep-batch", "data": nested(64) } },
        { "publish": { "channel": "stock:deep-batch", "data": nested(65) } },
    ]});
    let (status, body) = h.api("batch", commands).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["replies"][0].get("publish").is_some(), "{body}");
    assert_eq!(body["replies"][1]["error"]["code"], 107, "{body}");
}

#[tokio::test]
async fn client_publish_is_held_to_the_same_limit() {
    let h = Herald::start(BIN, &[("HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH", "true")])
        .await
        .unwrap();
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("deep-client"))
        .await
        .unwrap();
    let reply = c
        .command(json!({ "subscribe": { "channel": "chat:deep" } }))
        .await
        .unwrap();
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let publish = |depth| json!({ "publish": { "channel": "chat:deep", "data": nested(depth) } });
    let refused = c.command(publish(65)).await.unwrap();
    assert_eq!(refused["error"]["code"], 107, "{refused}");
    let accepted = c.command(publish(64)).await.unwrap();
    assert!(accepted.get("publish").is_some(), "{accepted}");
    let push = c.next_push().await.unwrap();
    assert_eq!(
        push["pub"]["data"],
        nested(64),
        "only the 64-level one is delivered"
    );
}
