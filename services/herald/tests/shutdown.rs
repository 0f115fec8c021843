//! Lifecycle as Kubernetes relies on it: readiness, SIGTERM drain with
//! reconnect advice, a draining node that takes no new connections, exit
//! within the deadline.

use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::sse::SseClient;
use serde_json::json;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Sends SIGTERM and returns once `/readyz` no longer answers 200: the drain has begun.
async fn terminate_and_await_unready(h: &Herald) -> Instant {
    let sent = Instant::now();
    h.terminate().unwrap();
    let deadline = sent + Duration::from_secs(5);
    while h.readyz().await == Some(200) {
        assert!(Instant::now() < deadline, "readiness never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// What one attempt to connect to a draining node came to.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// The TCP connection or the WebSocket handshake failed.
    Refused,
    /// Opened, then closed before any connect reply, with this code.
    Closed(u16),
}

/// Opens a WebSocket and sends `connect`, as an SDK does; panics if the node
/// answers the connect or keeps the connection longer than a second.
async fn attempt(url: &str, token: &str) -> Attempt {
    let started = Instant::now();
    let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(1), Client::open(url)).await
    else {
        return Attempt::Refused;
    };
    let _ = c
        .send_raw(&json!({"id": 1, "connect": {"token": token}}).to_string())
        .await;
    let (code, _) = tokio::time::timeout(Duration::from_secs(1), c.closed())
        .await
        .expect("a draining node closes new connections at once")
        .unwrap();
    let reply = c.wait_for(|m| m.get("connect").is_some()).await;
    assert!(
        reply.is_err(),
        "a draining node accepted a connect: {reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    Attempt::Closed(code)
}

/// A node with the given `server.drain_spread` and `server.drain_timeout`.
async fn draining_node(spread: &str, timeout: &str) -> Herald {
    Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__DRAIN_SPREAD", spread),
            ("HERALD_SERVER__DRAIN_TIMEOUT", timeout),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sigterm_drains_clients_with_reconnect_advice_and_exits() {
    let mut h = draining_node("1s", "5s").await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(
            Client::connect(&h.ws_url(), &h.token(&format!("u{i}")))
                .await
                .unwrap()
                .0,
        );
    }
    let started = tokio::time::Instant::now();
    h.terminate().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.readyz().await == Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in &mut clients {
        let (code, reason) = c.closed().await.unwrap();
        assert_eq!(
            (code, reason.as_str()),
            (3001, "shutdown"),
            "3001 tells SDKs to reconnect"
        );
    }
    let status = h.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}\n{}", h.log());
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn dev_mode_serves_demo_tokens_and_refuses_split_roles() {
    let h = Herald::spawn(BIN, &[("HERALD_API__KEY", "devkey")])
        .await
        .unwrap();
    h.wait_ready().await.unwrap();
    let page = reqwest::get(format!("http://{}/", h.client_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("herald.js"), "demo page served");
    let token: serde_json::Value =
        reqwest::get(format!("http://{}/dev/token?user=ann", h.client_addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let (_, connected) = Client::connect(&h.ws_url(), token["token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(connected["subs"].get("user:ann").is_some());
    assert!(h.log().contains("DEV MODE"));

    let (code, _, err) = herald_testkit::herald::run_command(
        BIN,
        &["check-config"],
        &[("HERALD_SERVER__ROLE", "gateway")],
    )
    .await
    .unwrap();
    assert_eq!(code, 64, "{err}");
}

#[tokio::test]
async fn clients_reconnecting_to_a_draining_node_are_turned_away_and_it_exits_on_time() {
    let spread = Duration::from_secs(2);
    let mut h = draining_node("2s", "10s").await;
    let (exited_tx, exited) = tokio::sync::watch::channel(false);
    let mut reconnecting = Vec::new();
    for i in 0..20 {
        let (url, token) = (h.ws_url(), h.token(&format!("u{i}")));
        let (mut c, _) = Client::connect(&url, &token).await.unwrap();
        let exited = exited.clone();
        // Told to go, the client comes straight back to the same node, as an
        // SDK behind a round-robin balancer may, until the node is gone.
        reconnecting.push(tokio::spawn(async move {
            let (code, reason) = c.closed().await.unwrap();
            assert_eq!((code, reason.as_str()), (3001, "shutdown"));
            let mut attempts = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            while !*exited.borrow() {
                pace.tick().await;
                attempts.push(attempt(&url, &token).await);
            }
            attempts
        }));
    }
    let sent = terminate_and_await_unready(&h).await;
    let status = h.wait_exit(Duration::from_secs(15)).await.unwrap();
    let drain = sent.elapsed();
    exited_tx.send(true).unwrap();
    println!("drain with spread {spread:?} and 20 reconnecting clients took {drain:?}");
    assert!(status.success(), "{status:?}\n{}", h.log());
    let mut attempts = Vec::new();
    for task in reconnecting {
        attempts.extend(task.await.unwrap());
    }
    let refused = attempts.iter().filter(|a| **a == Attempt::Refused).count();
    println!(
        "reconnect attempts during the drain: {} refused, {} closed at once",
        refused,
        attempts.len() - refused
    );
    assert!(!attempts.is_empty(), "clients tried to come back");
    assert!(
        attempts
            .iter()
            .all(|a| *a == Attempt::Refused || *a == Attempt::Closed(3001)),
        "{attempts:?}"
    );
    assert!(
        drain < spread + Duration::from_millis(1500),
        "drain took {drain:?}\n{}",
        h.log()
    );
}

#[tokio::test]
async fn a_connect_that_arrives_after_the_drain_began_gets_3001() {
    let mut h = draining_node("2s", "10s").await;
    let (mut connected, _) = Client::connect(&h.ws_url(), &h.token("early"))
        .await
        .unwrap();
    // Accepted and upgraded before SIGTERM, but not connected yet.
    let mut late = Client::open(&h.ws_url()).await.unwrap();
    let sent = terminate_and_await_unready(&h).await;
    let asked = Instant::now();
    let _ = late
        .send_raw(&json!({"id": 1, "connect": {"token": h.token("late")}}).to_string())
        .await;
    let (code, reason) = late.closed().await.unwrap();
    assert_eq!((code, reason.as_str()), (3001, "shutdown"));
    assert!(
        late.wait_for(|m| m.get("connect").is_some()).await.is_err(),
        "no session registers once the drain has begun"
    );
    assert!(asked.elapsed() < Duration::from_secs(1), "told at once");
    assert_eq!(connected.closed().await.unwrap().0, 3001);
    let status = h.wait_exit(Duration::from_secs(15)).await.unwrap();
    println!("drain with a late connect took {:?}", sent.elapsed());
    assert!(status.success(), "{status:?}\n{}", h.log());
    assert!(sent.elapsed() < Duration::from_millis(3500));
}

#[tokio::test]
async fn sse_streams_are_drained_with_the_same_rule() {
    let mut h = draining_node("2s", "10s").await;
    let url = |user: &str| {
        format!(
            "http://{}/connection/sse?token={}",
            h.client_addr,
            h.token(user)
        )
    };
    let mut streams = Vec::new();
    for i in 0..5 {
        let mut sse = SseClient::open(&url(&format!("s{i}")), None).await.unwrap();
        assert!(sse.next().await.unwrap().data.get("connect").is_some());
        streams.push(sse);
    }
    let sent = terminate_and_await_unready(&h).await;
    match SseClient::open(&url("late"), None).await {
        Err(e) => assert!(
            !e.to_string().contains("status"),
            "refused, not an HTTP error: {e}"
        ),
        Ok(mut sse) => {
            let event = sse.next().await.unwrap();
            assert_eq!(event.data["disconnect"]["code"], 3001, "{:?}", event.data);
        }
    }
    for sse in &mut streams {
        let event = sse.next().await.unwrap();
        assert_eq!(
            event.data["disconnect"],
            json!({"code": 3001, "reason": "shutdown"})
        );
        let end = sse.next().await;
        assert!(
            end.as_ref()
                .is_err_and(|e| e.to_string().contains("stream ended")),
            "the stream ends after the disconnect event: {end:?}"
        );
    }
    let status = h.wait_exit(Duration::from_secs(15)).await.unwrap();
    println!("drain of 5 SSE streams took {:?}", sent.elapsed());
    assert!(status.success(), "{status:?}\n{}", h.log());
    assert!(sent.elapsed() < Duration::from_millis(3500));
}
