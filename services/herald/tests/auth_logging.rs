//! Refused authentications are logged at info with the reason and the remote
//! address (bad or expired connection tokens over WebSocket and SSE, a wrong
//! server API key), rate-limited per node: a burst produces a bounded number
//! of lines and a summary of those left out.

use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::{token_with_secret, Herald};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Lines of the log mentioning refused authentication.
fn refusals(h: &Herald) -> Vec<String> {
    h.log()
        .lines()
        .filter(|l| l.contains("authentication refused"))
        .map(str::to_owned)
        .collect()
}

/// Polls the log until `pred` holds (10 s at most).
async fn log_until(h: &Herald, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = h.log();
        if pred(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log never matched:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refused_connect(h: &Herald, token: &str) {
    let mut c = Client::open(&h.ws_url()).await.unwrap();
    c.send_raw(&json!({"id": 1, "connect": {"token": token}}).to_string())
        .await
        .unwrap();
    let _ = c.closed().await;
}

#[tokio::test]
async fn refusals_are_logged_with_reason_and_remote_address() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let forged = token_with_secret(&json!({"sub": "mallory"}), "wrong-secret");
    refused_connect(&h, &forged).await;
    let log = log_until(&h, |l| l.contains("authentication refused")).await;
    let line = log
        .lines()
        .find(|l| l.contains("authentication refused"))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("invalid token"), "reason: {line}");
    assert!(line.contains("remote=127.0.0.1:"), "remote address: {line}");

    let sse = format!("http://{}/connection/sse?token={forged}", h.client_addr);
    let status = reqwest::get(sse).await.unwrap().status().as_u16();
    assert_eq!(status, 401);
    log_until(&h, |l| {
        l.lines()
            .any(|l| l.contains("authentication refused") && l.contains("sse"))
    })
    .await;

    let (status, _) = h
        .api_with_key("info", json!({}), Some("wrong-key"))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let log = log_until(&h, |l| {
        l.lines()
            .any(|l| l.contains("authentication refused") && l.contains("api key"))
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("authentication refused") && l.contains("api key"))
        .unwrap();
    assert!(line.contains("remote=127.0.0.1:"), "{line}");
}

#[tokio::test]
async fn a_burst_of_1000_refusals_produces_a_bounded_number_of_lines() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/info", h.internal_addr);
    for _ in 0..1000 {
        let status = client
            .post(&url)
            .header("X-API-Key", "wrong-key")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    // One more refusal after the window has turned brings the summary line.
    let summary = |l: &str| l.contains("authentication refusals not logged");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !h.log().lines().any(summary) {
        assert!(tokio::time::Instant::now() < deadline, "no summary line");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = client
            .post(&url)
            .header("X-API-Key", "wrong-key")
            .body("{}")
            .send()
            .await
            .unwrap();
    }
    let lines = refusals(&h);
    assert!(!lines.is_empty());
    assert!(
        lines.len() <= 200,
        "{} refusal lines for a burst of 1000",
        lines.len()
    );
}
