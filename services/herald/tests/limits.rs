//! Connection limits on the client port: the node's cap and its connect rate
//! answer `503` with `Retry-After` before any upgrade (WebSocket and SSE); a
//! user over its per-node cap gets error 106 to connect; a client over its
//! command budget gets error 111, and close 3013 if it keeps on.

use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

const UPGRADE: &str = "GET /connection/websocket HTTP/1.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n";

/// Sends `request_head` and returns the answer's head; the stream stays open
/// for an accepted upgrade (its connection counts until the stream drops).
async fn answer_head(addr: &str, request_head: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{request_head}Host: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before an answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer");
    (String::from_utf8_lossy(&answer).into_owned(), stream)
}

fn refused_with_retry_after(answer: &str) -> bool {
    answer.starts_with("HTTP/1.1 503") && answer.to_ascii_lowercase().contains("retry-after: 1")
}

async fn await_metric(h: &Herald, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !h.metrics().await.lines().any(|l| l == line) {
        assert!(tokio::time::Instant::now() < deadline, "no `{line}`");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_node_cap_refuses_with_503_until_a_connection_leaves() {
    let h = Herald::start(BIN, &[("HERALD_CLIENT__MAX_CONNECTIONS", "2")])
        .await
        .unwrap();
    let addr = h.client_addr.clone();
    let (first, _) = Client::connect(&h.ws_url(), &h.token("a")).await.unwrap();
    let (_second, _) = Client::connect(&h.ws_url(), &h.token("b")).await.unwrap();

    let (answer, _) = answer_head(&addr, UPGRADE).await;
    assert!(refused_with_retry_after(&answer), "{answer}");
    let sse = format!("GET /connection/sse?token={} HTTP/1.1\r\n", h.token("c"));
    let (answer, _) = answer_head(&addr, &sse).await;
    assert!(refused_with_retry_after(&answer), "{answer}");
    await_metric(&h, r#"herald_connections_refused_total{reason="full"} 2"#).await;

    drop(first);
    await_metric(&h, r#"herald_connections{transport="websocket"} 1"#).await;
    let (answer, _sse) = answer_head(&addr, &sse).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (answer, _) = answer_head(&addr, UPGRADE).await;
    assert!(refused_with_retry_after(&answer), "full again: {answer}");
}

#[tokio::test]
async fn the_connect_rate_admits_one_seconds_worth_at_once() {
    let h = Herald::start(BIN, &[("HERALD_CLIENT__CONNECT_RATE", "2")])
        .await
        .unwrap();
    let (mut admitted, mut refused, mut open) = (0, 0, Vec::new());
    for _ in 0..10 {
        let (answer, stream) = answer_head(&h.client_addr, UPGRADE).await;
        if answer.starts_with("HTTP/1.1 101") {
            admitted += 1;
            open.push(stream);
        } else {
            assert!(refused_with_retry_after(&answer), "{answer}");
            refused += 1;
        }
    }
    // Two at once, and at most one more if the loop took over half a second.
    assert!((2..=3).contains(&admitted), "{admitted} admitted");
    assert_eq!(admitted + refused, 10);
    await_metric(
        &h,
        &format!(r#"herald_connections_refused_total{{reason="rate"}} {refused}"#),
    )
    .await;
}

#[tokio::test]
async fn a_user_over_its_cap_on_the_node_gets_106() {
    let h = Herald::start(BIN, &[("HERALD_CLIENT__MAX_CONNECTIONS_PER_USER", "1")])
        .await
        .unwrap();
    let (_alice, _) = Client::connect(&h.ws_url(), &h.token("alice"))
        .await
        .unwrap();
    let mut again = Client::open(&h.ws_url()).await.unwrap();
    let reply = again
        .command(json!({"connect": {"token": h.token("alice")}}))
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], 106, "{reply}");
    let (_bob, _) = Client::connect(&h.ws_url(), &h.token("bob")).await.unwrap();
}

#[tokio::test]
async fn a_client_over_its_command_budget_gets_111_then_3013() {
    let h = Herald::start(BIN, &[("HERALD_CLIENT__COMMANDS_PER_SECOND", "2")])
        .await
        .unwrap();
    // The connect is the first of two; the bucket earns one more each 500 ms.
    let (mut client, _) = Client::connect(&h.ws_url(), &h.token("u")).await.unwrap();
    let frame: Vec<String> = (10..20)
        .map(|id| json!({"id": id, "ping": {}}).to_string())
        .collect();
    client.send_raw(&frame.join("\n")).await.unwrap();
    let (code, reason) = client.closed().await.unwrap();
    assert_eq!((code, reason.as_str()), (3013, "too many requests"));
    let mut errors = Vec::new();
    for id in 10..13 {
        let reply = client
            .wait_for(|m| m["id"] == id)
            .await
            .unwrap_or_else(|e| panic!("no reply to {id}: {e}"));
        errors.push(reply["error"]["code"].as_u64());
    }
    // One runs, two are refused (a second's worth of debt), the next closes.
    assert_eq!(errors, [None, Some(111), Some(111)]);
    assert!(client.wait_for(|m| m["id"] == 13).await.is_err());
    await_metric(
        &h,
        r#"herald_disconnects_total{code="3013",transport="websocket"} 1"#,
    )
    .await;
}
