//! Native TLS on both listeners: wss:// and SSE over https on the client
//! port, the server API over https on the internal port, certificates swapped
//! on SIGHUP for new connections while open ones go on (a broken file keeps
//! the old certificate), and unusable files refused at start with exit 64.

use std::path::Path;
use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::{run_command, Herald, API_KEY, SECRET};
use herald_testkit::sse::SseClient;
use herald_testkit::tls::TestCa;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Environment that turns TLS on for one listener (`CLIENT` or `INTERNAL`)
/// with the files in `dir`.
fn tls_env(listener: &str, dir: &Path) -> Vec<(String, String)> {
    let path = |file: &str| dir.join(file).display().to_string();
    vec![
        (
            format!("HERALD_SERVER__{listener}_TLS__CERT_FILE"),
            path("cert.pem"),
        ),
        (
            format!("HERALD_SERVER__{listener}_TLS__KEY_FILE"),
            path("key.pem"),
        ),
    ]
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Publishes through the API over https; returns the result object.
async fn publish_https(
    http: &reqwest::Client,
    internal: &str,
    channel: &str,
    data: Value,
) -> Value {
    let response = http
        .post(format!("https://{internal}/api/publish"))
        .header("X-API-Key", API_KEY)
        .body(json!({ "channel": channel, "data": data }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("result").is_some(), "{body}");
    body["result"].clone()
}

/// Waits until `/readyz` answers 200 over https.
async fn wait_ready_https(http: &reqwest::Client, h: &Herald) {
    let url = format!("https://{}/readyz", h.internal_addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready over https; log:\n{}",
            h.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn wss_and_sse_over_https_receive_what_the_https_api_publishes() {
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.issue("herald", 1).unwrap().write_to(dir.path()).unwrap();
    let mut env = tls_env("CLIENT", dir.path());
    env.extend(tls_env("INTERNAL", dir.path()));
    env.push(("HERALD_AUTH__HMAC_SECRET".into(), SECRET.into()));
    env.push(("HERALD_API__KEY".into(), API_KEY.into()));
    let h = Herald::spawn(BIN, &as_refs(&env)).await.unwrap();
    let http = ca.http_client().unwrap();
    wait_ready_https(&http, &h).await;

    let (_, alpn) = ca.presented(&h.client_addr).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        h.readyz().await,
        None,
        "plain http to the TLS internal port gets no HTTP answer"
    );

    let mut ws = Client::open_tls(&h.client_addr, ca.client_config())
        .await
        .unwrap();
    let reply = ws
        .command(json!({ "connect": { "token": h.token("ann") } }))
        .await
        .unwrap();
    assert!(reply.get("connect").is_some(), "{reply}");
    let reply = ws
        .command(json!({ "subscribe": { "channel": "stock:TLS" } }))
        .await
        .unwrap();
    assert!(reply.get("subscribe").is_some(), "{reply}");

    let query = format!("token={}&channels=stock:TLS", h.token("bob"));
    let url = format!("https://{}/connection/sse?{query}", h.client_addr);
    let mut sse = SseClient::open_with(&http, &url, None).await.unwrap();
    assert!(sse.next().await.unwrap().data.get("connect").is_some());
    assert_eq!(sse.next().await.unwrap().data["channel"], "stock:TLS");

    publish_https(&http, &h.internal_addr, "stock:TLS", json!({"px": 1})).await;
    let push = ws.next_push().await.unwrap();
    assert_eq!(push["channel"], "stock:TLS");
    assert_eq!(push["pub"]["data"], json!({"px": 1}));
    let event = sse.next().await.unwrap();
    assert_eq!(event.data["channel"], "stock:TLS");
    assert_eq!(event.data["pub"]["data"], json!({"px": 1}));

    // 10 MiB while the client reads nothing: more than the socket buffers
    // hold, so the server's writes stop on a full socket and resume as the
    // client reads, and everything arrives in order.
    let pad = "x".repeat(256 * 1024);
    for n in 0..40 {
        let data = json!({"n": n, "pad": pad});
        publish_https(&http, &h.internal_addr, "stock:TLS", data).await;
    }
    for n in 0..40 {
        let push = ws.next_push().await.unwrap();
        assert_eq!(push["pub"]["data"]["n"], n);
    }
}

#[tokio::test]
async fn sighup_serves_new_connections_the_new_certificate_and_keeps_open_ones() {
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue("first", 1).unwrap();
    first.write_to(dir.path()).unwrap();
    let env = tls_env("CLIENT", dir.path());
    let h = Herald::start(BIN, &as_refs(&env)).await.unwrap();
    assert!(h.log().contains("TLS on"), "{}", h.log());
    assert_eq!(ca.presented(&h.client_addr).await.unwrap().0, first.der);

    let mut open = Client::open_tls(&h.client_addr, ca.client_config())
        .await
        .unwrap();
    open.command(json!({ "connect": { "token": h.token("ann") } }))
        .await
        .unwrap();
    open.command(json!({ "subscribe": { "channel": "stock:HUP" } }))
        .await
        .unwrap();

    let second = ca.issue("second", 2).unwrap();
    second.write_to(dir.path()).unwrap();
    h.hangup().unwrap();
    h.wait_log("TLS certificate reloaded", 1).await.unwrap();
    assert_eq!(ca.presented(&h.client_addr).await.unwrap().0, second.der);
    h.publish("stock:HUP", json!({"n": 1})).await.unwrap();
    assert_eq!(open.next_push().await.unwrap()["pub"]["data"]["n"], 1);

    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    h.hangup().unwrap();
    h.wait_log("TLS certificate reload failed", 1)
        .await
        .unwrap();
    assert_eq!(
        ca.presented(&h.client_addr).await.unwrap().0,
        second.der,
        "a broken file keeps the certificate in use"
    );
    assert_eq!(h.readyz().await, Some(200));
    h.publish("stock:HUP", json!({"n": 2})).await.unwrap();
    assert_eq!(open.next_push().await.unwrap()["pub"]["data"]["n"], 2);
    let mut fresh = Client::open_tls(&h.client_addr, ca.client_config())
        .await
        .unwrap();
    let reply = fresh
        .command(json!({ "connect": { "token": h.token("bob") } }))
        .await
        .unwrap();
    assert!(reply.get("connect").is_some(), "{reply}");
}

#[tokio::test]
async fn unusable_certificate_files_stop_start_up_with_exit_64() {
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.issue("herald", 1).unwrap().write_to(dir.path()).unwrap();
    let other = tempfile::tempdir().unwrap();
    ca.issue("other", 2)
        .unwrap()
        .write_to(other.path())
        .unwrap();
    let cert = dir.path().join("cert.pem").display().to_string();
    let other_key = other.path().join("key.pem").display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();
    let base = [
        ("HERALD_AUTH__HMAC_SECRET", SECRET),
        ("HERALD_API__KEY", API_KEY),
    ];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("HERALD_SERVER__CLIENT_TLS__CERT_FILE", &missing),
                ("HERALD_SERVER__CLIENT_TLS__KEY_FILE", &other_key),
            ],
            "server.client_tls: ",
        ),
        (
            &[
                ("HERALD_SERVER__INTERNAL_TLS__CERT_FILE", &cert),
                ("HERALD_SERVER__INTERNAL_TLS__KEY_FILE", &other_key),
            ],
            "server.internal_tls: ",
        ),
        (
            &[("HERALD_SERVER__CLIENT_TLS__CERT_FILE", &cert)],
            "server.client_tls: cert_file and key_file must be set together",
        ),
    ];
    for (env, expected) in cases {
        let mut all = base.to_vec();
        all.extend_from_slice(env);
        let (code, _, stderr) = run_command(BIN, &[], &all).await.unwrap();
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}
