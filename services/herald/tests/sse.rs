//! The SSE transport: connect by token, live publications with position ids,
//! loss-free resume with `Last-Event-ID`, refusals as HTTP errors.

use herald_testkit::herald::{token_with_secret, Herald};
use herald_testkit::sse::SseClient;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

fn url(h: &Herald, query: &str) -> String {
    format!("http://{}/connection/sse?{query}", h.client_addr)
}

#[tokio::test]
async fn streams_publications_and_resumes_from_last_event_id() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let query = format!("token={}&channels=stock:SSE", h.token("ann"));
    let mut sse = SseClient::open(&url(&h, &query), None).await.unwrap();
    let connect = sse.next().await.unwrap();
    assert!(connect.data["connect"]["subs"]["user:ann"]["recoverable"]
        .as_bool()
        .unwrap());
    let subscribed = sse.next().await.unwrap();
    assert_eq!(subscribed.data["channel"], "stock:SSE");

    h.publish("user:ann", json!({"n": 1})).await.unwrap();
    let event = sse.next().await.unwrap();
    assert_eq!(event.data["channel"], "user:ann");
    assert_eq!(event.data["pub"]["data"], json!({"n": 1}));
    let last_id = event.id.expect("publications carry stream positions");
    drop(sse);

    for n in 2..=4 {
        h.publish("user:ann", json!({ "n": n })).await.unwrap();
    }
    let mut sse = SseClient::open(&url(&h, &query), Some(&last_id))
        .await
        .unwrap();
    let connect = sse.next().await.unwrap();
    assert_eq!(
        connect.data["connect"]["subs"]["user:ann"]["recovered"], true,
        "{}",
        connect.data
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = sse.next().await.unwrap();
        if e.data["channel"] == "user:ann" && e.data.get("pub").is_some() {
            assert!(e.id.is_some());
            got.push(e.data["pub"]["data"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(got, [2, 3, 4], "missed publications, in order, once");
}

#[tokio::test]
async fn refuses_bad_tokens_and_forbidden_channels_with_http_errors() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let forged = token_with_secret(&json!({"sub": "x"}), "wrong");
    let err = SseClient::open(&url(&h, &format!("token={forged}")), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("401"), "{err}");
    let err = SseClient::open(&url(&h, ""), None).await.err().unwrap();
    assert!(err.to_string().contains("401"), "{err}");
    let query = format!("token={}&channels=user:someone-else", h.token("ann"));
    let err = SseClient::open(&url(&h, &query), None).await.err().unwrap();
    assert!(err.to_string().contains("403"), "{err}");
}
