//! Lifecycle as Kubernetes relies on it: readiness, SIGTERM drain with
//! reconnect advice, exit within the deadline.

use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn sigterm_drains_clients_with_reconnect_advice_and_exits() {
    let mut h = Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__DRAIN_SPREAD", "1s"),
            ("HERALD_SERVER__DRAIN_TIMEOUT", "5s"),
        ],
    )
    .await
    .unwrap();
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
    let h = Herald::spawn(BIN, &[("HERALD_API__KEY", "devkey")]).unwrap();
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
