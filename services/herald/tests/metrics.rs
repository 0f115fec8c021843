//! Metrics end to end: real traffic over WebSocket and SSE against a real
//! node (memory engine, then Redis engine), then `/metrics` on the internal
//! port shows every counter moved by transport, code, result and source, and
//! `promtool check metrics` finds nothing to say about the exposition.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::redis::RedisServer;
use herald_testkit::sse::SseClient;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A namespace clients may publish into.
const CHAT: [(&str, &str); 1] = [("HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH", "true")];

/// The value of the sample `series` (name and labels as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until every `(series, at least)` holds (5 s at most): flushers add
/// their counts once per round, just after the write a client saw.
async fn scrape_until(h: &Herald, wanted: &[(String, f64)]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = h.metrics().await;
        let short: Vec<_> = wanted
            .iter()
            .filter(|(s, min)| sample(&text, s).is_none_or(|v| v < *min))
            .collect();
        if short.is_empty() {
            return text;
        }
        if tokio::time::Instant::now() >= deadline {
            let values: Vec<_> = short.iter().map(|(s, _)| (s, sample(&text, s))).collect();
            panic!("series short of their minimum: {values:?}\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (apt-get install prometheus; scripts/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

fn series(name: &str, labels: &str, min: f64) -> (String, f64) {
    (format!("herald_{name}{{{labels}}}"), min)
}

/// Drives traffic through `h` and checks what `/metrics` says; `from` is
/// where a recovery's history read comes from (`memory` or `redis`).
async fn traffic_moves_the_counters(h: &Herald, from: &str) {
    let fresh = h.metrics().await;
    for s in [
        r#"herald_disconnects_total{code="3008",transport="sse"}"#,
        r#"herald_deliveries_total{transport="websocket"}"#,
        r#"herald_publications_total{channel_namespace="chat",source="client"}"#,
    ] {
        assert_eq!(sample(&fresh, s), Some(0.0), "{s} exists at start");
    }

    let (mut ws, _) = Client::connect(&h.ws_url(), &h.token("w")).await.unwrap();
    ws.command(json!({"subscribe": {"channel": "stock:M"}}))
        .await
        .unwrap();
    let sse_url = format!(
        "http://{}/connection/sse?token={}&channels=stock:M",
        h.client_addr,
        h.token("s")
    );
    let mut sse = SseClient::open(&sse_url, None).await.unwrap();
    let first = h.publish("stock:M", json!({"n": 1})).await.unwrap();
    h.publish("stock:M", json!({"n": 2})).await.unwrap();
    for n in [1, 2] {
        assert_eq!(ws.next_push().await.unwrap()["pub"]["data"]["n"], n);
        let is_pub = |e: &Value| e["pub"]["data"]["n"] == n;
        while !is_pub(&sse.next().await.unwrap().data) {}
    }

    let reply = ws
        .command(json!({"subscribe": {"channel": "chat:room"}}))
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    let reply = ws
        .command(json!({"publish": {"channel": "chat:room", "data": {"hi": 1}}}))
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");

    let (mut late, _) = Client::connect(&h.ws_url(), &h.token("late"))
        .await
        .unwrap();
    let (offset, epoch) = (&first["offset"], &first["epoch"]);
    let reply = late
        .command(json!({"subscribe": {"channel": "stock:M", "recover": true, "offset": offset, "epoch": epoch}}))
        .await
        .unwrap();
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");

    let (status, body) = h
        .api("publish", json!({"channel": "nowhere:x", "data": 1}))
        .await
        .unwrap();
    assert_eq!((status, &body["error"]["code"]), (200, &json!(102)));

    let (mut gone, _) = Client::connect(&h.ws_url(), &h.token("gone"))
        .await
        .unwrap();
    let (mut odd, _) = Client::connect(&h.ws_url(), &h.token("odd")).await.unwrap();
    h.api("disconnect", json!({"user": "gone"})).await.unwrap();
    h.api(
        "disconnect",
        json!({"user": "odd", "disconnect": {"code": 4123}}),
    )
    .await
    .unwrap();
    assert_eq!(gone.closed().await.unwrap().0, 3503);
    assert_eq!(odd.closed().await.unwrap().0, 4123);

    let ws_t = r#"transport="websocket""#;
    let sse_t = r#"transport="sse""#;
    let mut wanted = vec![
        series("connects_total", ws_t, 4.0),
        series("connects_total", sse_t, 1.0),
        series("disconnects_total", &format!(r#"code="3503",{ws_t}"#), 1.0),
        series("disconnects_total", &format!(r#"code="other",{ws_t}"#), 1.0),
        series("connection_duration_seconds_count", ws_t, 2.0),
        series("connection_queue_high_water_frames_count", ws_t, 2.0),
        series(
            "publications_total",
            r#"channel_namespace="stock",source="api""#,
            2.0,
        ),
        series(
            "publications_total",
            r#"channel_namespace="chat",source="client""#,
            1.0,
        ),
        series("subscriptions", r#"channel_namespace="stock""#, 3.0),
        series("channels", r#"channel_namespace="chat""#, 1.0),
        series("api_requests_total", r#"method="publish",result="ok""#, 2.0),
        series(
            "api_requests_total",
            r#"method="publish",result="102""#,
            1.0,
        ),
        series(
            "api_request_duration_seconds_count",
            r#"method="publish""#,
            3.0,
        ),
        series(
            "client_commands_total",
            r#"method="subscribe",result="ok""#,
            3.0,
        ),
        series(
            "client_command_duration_seconds_count",
            r#"method="publish""#,
            1.0,
        ),
        series(
            "recoveries_total",
            &format!(r#"from="{from}",outcome="recovered""#),
            1.0,
        ),
    ];
    for t in [ws_t, sse_t] {
        for name in [
            "deliveries_total",
            "frames_written_total",
            "bytes_written_total",
            "writes_total",
            "pushes_per_write_count",
            "publish_to_write_seconds_count",
        ] {
            wanted.push(series(name, t, 2.0));
        }
    }
    let text = scrape_until(h, &wanted).await;
    assert_eq!(sample(&text, "herald_engine_up"), Some(1.0));
    assert_eq!(sample(&text, "herald_nodes"), Some(1.0));
    assert!(text.contains("herald_build_info{commit="), "{text}");
    promtool_check(&text);
}

#[tokio::test]
async fn memory_engine_metrics_move_and_pass_promtool() {
    let h = Herald::start(BIN, &CHAT).await.unwrap();
    traffic_moves_the_counters(&h, "memory").await;
}

#[tokio::test]
async fn redis_engine_metrics_move_and_pass_promtool() {
    let redis = RedisServer::start().await.unwrap();
    let url = redis.url();
    let env = [CHAT[0], ("HERALD_ENGINE__REDIS_URL", url.as_str())];
    let h = Herald::start(BIN, &env).await.unwrap();
    let fresh = h.metrics().await;
    for s in [
        r#"herald_redis_errors_total{kind="timeout"}"#,
        r#"herald_redis_gap_checks_total{outcome="unrecoverable"}"#,
        "herald_redis_resyncs_total",
        "herald_redis_pubsub_reconnects_total",
    ] {
        assert_eq!(sample(&fresh, s), Some(0.0), "{s} exists at start");
    }
    traffic_moves_the_counters(&h, "redis").await;
    let probed = [("herald_redis_probe_rtt_seconds_count".to_owned(), 1.0)];
    scrape_until(&h, &probed).await;
}
