//! The SSE stream as the client listener serves it, read over raw TCP so the
//! wire itself is checked: the answer's head, chunk framing, events with
//! position ids and a loss-free resume, ping comments, the drain's
//! disconnect event and terminating chunk, refusals as complete answers,
//! CORS, slow readers cut off, clients leaving noticed; HTTP/1.0 streams;
//! and a stream asked for after another request on a kept-alive connection
//! (served by the HTTP server instead).

use std::time::Duration;

use anyhow::{bail, Context};
use herald_testkit::client::WAIT;
use herald_testkit::herald::{token_with_secret, Herald};
use herald_testkit::sse::SseClient;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const ALLOWED: &str = "https://app.example";

/// One event of a raw stream.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    /// `None` for a comment (a ping).
    data: Option<Value>,
}

/// An SSE answer read off a raw TCP connection.
struct Raw {
    stream: TcpStream,
    /// Bytes read and not decoded yet.
    wire: Vec<u8>,
    /// Body bytes decoded and not yet parsed into events.
    body: Vec<u8>,
    head: String,
    chunked: bool,
    /// The terminating chunk arrived.
    ended: bool,
}

impl Raw {
    /// Sends `GET target` (with `headers`, each ending in CRLF) and reads the answer's head.
    async fn open(addr: &str, target: &str, headers: &str) -> anyhow::Result<Raw> {
        Raw::open_with(
            TcpStream::connect(addr).await?,
            addr,
            target,
            headers,
            "1.1",
        )
        .await
    }

    async fn open_with(
        mut stream: TcpStream,
        addr: &str,
        target: &str,
        headers: &str,
        version: &str,
    ) -> anyhow::Result<Raw> {
        let request = format!("GET {target} HTTP/{version}\r\nHost: {addr}\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Raw {
            stream,
            wire: Vec::new(),
            body: Vec::new(),
            head: String::new(),
            chunked: false,
            ended: false,
        };
        let deadline = Instant::now() + WAIT;
        let end = loop {
            if let Some(end) = raw.wire.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !raw.read(deadline).await? {
                bail!("closed before an answer");
            }
        };
        raw.head = String::from_utf8(raw.wire.drain(..end + 4).collect())?;
        raw.chunked = raw.header("transfer-encoding") == Some("chunked");
        Ok(raw)
    }

    fn status(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Reads more bytes; false at end of stream.
    async fn read(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout_at(deadline, self.stream.read(&mut chunk))
            .await
            .context("timed out reading")??;
        self.wire.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Moves whole chunks from the wire to the body, checking their framing.
    fn dechunk(&mut self) -> anyhow::Result<()> {
        if !self.chunked {
            self.body.append(&mut self.wire);
            return Ok(());
        }
        while !self.ended {
            let Some(line) = self.wire.windows(2).position(|w| w == b"\r\n") else {
                return Ok(());
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.wire[..line])?, 16)
                .context("a chunk size line")?;
            if self.wire.len() < line + 2 + size + 2 {
                return Ok(());
            }
            if &self.wire[line + 2 + size..line + 4 + size] != b"\r\n" {
                bail!("a chunk not ended by CRLF");
            }
            let chunk: Vec<u8> = self.wire.drain(..line + 4 + size).collect();
            self.body
                .extend_from_slice(&chunk[line + 2..line + 2 + size]);
            self.ended = size == 0;
        }
        Ok(())
    }

    /// The next event; an error once the stream has ended.
    async fn next(&mut self) -> anyhow::Result<Event> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.dechunk()?;
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.body.drain(..end + 2).collect();
                return parse_event(std::str::from_utf8(&block)?);
            }
            if self.ended {
                bail!("stream ended");
            }
            if !self.read(deadline).await? {
                bail!("stream closed without its last chunk");
            }
        }
    }

    /// The next event with data, skipping pings.
    async fn next_data(&mut self) -> anyhow::Result<(Option<String>, Value)> {
        loop {
            if let Event {
                id,
                data: Some(data),
            } = self.next().await?
            {
                return Ok((id, data));
            }
        }
    }

    /// Reads until the connection closes; true if nothing came after the last chunk.
    async fn closes(&mut self) -> anyhow::Result<bool> {
        let deadline = Instant::now() + WAIT;
        while self.read(deadline).await? {}
        self.dechunk()?;
        Ok(self.wire.is_empty())
    }
}

fn parse_event(block: &str) -> anyhow::Result<Event> {
    let mut event = Event {
        id: None,
        data: None,
    };
    for line in block.lines() {
        if let Some(id) = line.strip_prefix("id: ") {
            event.id = Some(id.to_owned());
        } else if line == "id:" || line == "id: " {
            event.id = Some(String::new());
        } else if let Some(data) = line.strip_prefix("data: ") {
            event.data = Some(serde_json::from_str(data)?);
        }
    }
    Ok(event)
}

/// A refusal: the whole answer, which must carry its length and close.
async fn refusal(addr: &str, target: &str, headers: &str) -> (Raw, String) {
    let mut raw = Raw::open(addr, target, headers).await.unwrap();
    let length: usize = raw
        .header("content-length")
        .expect("a content-length")
        .parse()
        .unwrap();
    assert_eq!(raw.header("connection"), Some("close"), "{}", raw.head);
    raw.closes().await.unwrap();
    assert_eq!(raw.body.len(), length, "the body is content-length long");
    let body = String::from_utf8(std::mem::take(&mut raw.body)).unwrap();
    (raw, body)
}

fn sse_target(token: &str, channels: &str) -> String {
    format!("/connection/sse?token={token}&channels={channels}")
}

async fn await_metric(h: &Herald, line: &str) {
    let deadline = Instant::now() + WAIT;
    while !h.metrics().await.lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "no `{line}`");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn streams_chunked_events_and_resumes_from_last_event_id() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let target = sse_target(&h.token("ann"), "stock:RAW");
    let mut sse = Raw::open(&h.client_addr, &target, "").await.unwrap();
    assert_eq!(sse.status(), "200", "{}", sse.head);
    assert!(sse.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", sse.head);
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
        ("transfer-encoding", "chunked"),
    ] {
        assert_eq!(sse.header(name), Some(value), "{}", sse.head);
    }
    let (_, connect) = sse.next_data().await.unwrap();
    assert_eq!(
        connect["connect"]["subs"]["user:ann"]["recoverable"], true,
        "{connect}"
    );
    let (_, subscribed) = sse.next_data().await.unwrap();
    assert_eq!(subscribed["channel"], "stock:RAW");
    await_metric(&h, r#"herald_connections{transport="sse"} 1"#).await;

    h.publish("user:ann", json!({"n": 1})).await.unwrap();
    let (id, event) = sse.next_data().await.unwrap();
    assert_eq!(event["channel"], "user:ann");
    assert_eq!(event["pub"]["data"], json!({"n": 1}));
    let last_id = id.expect("publications carry stream positions");
    assert!(last_id.contains(":user:ann"), "{last_id}");
    drop(sse);

    for n in 2..=4 {
        h.publish("user:ann", json!({ "n": n })).await.unwrap();
    }
    let resume = format!("Last-Event-ID: {last_id}\r\n");
    let mut sse = Raw::open(&h.client_addr, &target, &resume).await.unwrap();
    let (_, connect) = sse.next_data().await.unwrap();
    assert_eq!(
        connect["connect"]["subs"]["user:ann"]["recovered"], true,
        "{connect}"
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        let (id, e) = sse.next_data().await.unwrap();
        if e["channel"] == "user:ann" && e.get("pub").is_some() {
            assert!(id.is_some_and(|id| !id.is_empty()));
            got.push(e["pub"]["data"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(got, [2, 3, 4], "missed publications, in order, once");
    h.publish("user:ann", json!({"n": 5})).await.unwrap();
    let live = loop {
        let (_, e) = sse.next_data().await.unwrap();
        if e["channel"] == "user:ann" {
            break e;
        }
    };
    assert_eq!(live["pub"]["data"]["n"], 5, "live again after the replay");
}

#[tokio::test]
async fn pings_are_comment_events() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_CLIENT__PING_INTERVAL", "200ms"),
            ("HERALD_CLIENT__PONG_TIMEOUT", "100ms"),
        ],
    )
    .await
    .unwrap();
    let mut sse = Raw::open(&h.client_addr, &sse_target(&h.token("p"), ""), "")
        .await
        .unwrap();
    assert!(sse
        .next()
        .await
        .unwrap()
        .data
        .unwrap()
        .get("connect")
        .is_some());
    for _ in 0..2 {
        let ping = sse.next().await.unwrap();
        assert!(ping.data.is_none() && ping.id.is_none(), "{ping:?}");
    }
    h.publish("user:p", json!("after pings")).await.unwrap();
    let (_, event) = sse.next_data().await.unwrap();
    assert_eq!(
        event["pub"]["data"], "after pings",
        "an unanswered ping does not close a one-way stream"
    );
}

#[tokio::test]
async fn a_drain_ends_the_stream_with_the_disconnect_event_and_the_last_chunk() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__DRAIN_SPREAD", "200ms"),
            ("HERALD_SERVER__DRAIN_TIMEOUT", "5s"),
        ],
    )
    .await
    .unwrap();
    let mut sse = Raw::open(&h.client_addr, &sse_target(&h.token("d"), ""), "")
        .await
        .unwrap();
    assert!(sse.next_data().await.unwrap().1.get("connect").is_some());
    h.terminate().unwrap();
    let (_, event) = sse.next_data().await.unwrap();
    assert_eq!(
        event["disconnect"],
        json!({"code": 3001, "reason": "shutdown"})
    );
    let end = sse.next().await;
    assert!(
        end.as_ref().is_err_and(|e| e.to_string() == "stream ended"),
        "{end:?}"
    );
    assert!(sse.ended, "the terminating chunk arrived");
    assert!(sse.closes().await.unwrap(), "nothing after the last chunk");
}

#[tokio::test]
async fn refusals_are_complete_json_answers() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let forged = token_with_secret(&json!({"sub": "x"}), "wrong");
    let (raw, body) = refusal(&h.client_addr, &sse_target(&forged, ""), "").await;
    assert_eq!(raw.status(), "401", "{}", raw.head);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"]["code"].as_u64().is_some(), "{body}");

    let target = sse_target(&h.token("ann"), "user:someone-else");
    let (raw, body) = refusal(&h.client_addr, &target, "").await;
    assert_eq!(raw.status(), "403", "{}", raw.head);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], 103, "{body}");
    await_metric(&h, r#"herald_connections{transport="sse"} 0"#).await;
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers_and_a_foreign_one_is_refused() {
    let h = Herald::start(BIN, &[("HERALD_AUTH__ALLOWED_ORIGINS", ALLOWED)])
        .await
        .unwrap();
    let target = sse_target(&h.token("o"), "");
    let origin = format!("Origin: {ALLOWED}\r\n");
    let mut sse = Raw::open(&h.client_addr, &target, &origin).await.unwrap();
    assert_eq!(sse.status(), "200", "{}", sse.head);
    assert_eq!(sse.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(sse.header("access-control-allow-credentials"), Some("true"));
    assert!(sse.header("vary").is_some_and(|v| v.contains("Origin")));
    assert!(sse.next_data().await.unwrap().1.get("connect").is_some());

    let (raw, body) = refusal(&h.client_addr, &target, "Origin: https://evil.example\r\n").await;
    assert_eq!(raw.status(), "403", "{}", raw.head);
    assert_eq!(raw.header("access-control-allow-origin"), None);
    assert_eq!(body, "origin not allowed");

    let forged = token_with_secret(&json!({"sub": "x"}), "wrong");
    let (raw, _) = refusal(&h.client_addr, &sse_target(&forged, ""), &origin).await;
    assert_eq!(raw.status(), "401", "{}", raw.head);
    assert_eq!(
        raw.header("access-control-allow-origin"),
        Some(ALLOWED),
        "a page can read why it was refused"
    );
}

#[tokio::test]
async fn a_slow_reader_is_cut_off_and_others_keep_receiving() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_CLIENT__QUEUE_SIZE", "8"),
            ("HERALD_CLIENT__WRITE_TIMEOUT", "30s"),
        ],
    )
    .await
    .unwrap();
    let mut slow = Raw::open(
        &h.client_addr,
        &sse_target(&h.token("slow"), "stock:FLOOD"),
        "",
    )
    .await
    .unwrap();
    let url = format!(
        "http://{}{}",
        h.client_addr,
        sse_target(&h.token("fast"), "stock:FLOOD")
    );
    let mut fast = SseClient::open(&url, None).await.unwrap();
    fast.next().await.unwrap();
    fast.next().await.unwrap();
    let blob = "x".repeat(16 * 1024);
    let mut counted = false;
    for n in 0..2000 {
        h.publish("stock:FLOOD", json!({ "n": n, "blob": blob }))
            .await
            .unwrap();
        while fast.next().await.unwrap().data["pub"]["data"]["n"] != n {}
        if h.metrics()
            .await
            .contains(r#"herald_slow_client_cutoffs_total{transport="sse"} 1"#)
        {
            counted = true;
            break;
        }
    }
    assert!(counted, "no cut-off counted");
    h.publish("stock:FLOOD", json!("still here")).await.unwrap();
    while fast.next().await.unwrap().data["pub"]["data"] != "still here" {}

    // Now reading: what was in flight, then the disconnect event and the end.
    let disconnect = loop {
        let (_, event) = slow.next_data().await.unwrap();
        if let Some(disconnect) = event.get("disconnect") {
            break disconnect.clone();
        }
    };
    assert_eq!(disconnect, json!({"code": 3008, "reason": "slow"}));
    assert!(slow.next().await.is_err());
    assert!(slow.ended, "the terminating chunk arrived");
    await_metric(&h, r#"herald_connections{transport="sse"} 1"#).await;
}

#[tokio::test]
async fn a_client_closing_its_connection_ends_the_session() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut sse = Raw::open(&h.client_addr, &sse_target(&h.token("bye"), ""), "")
        .await
        .unwrap();
    assert!(sse.next_data().await.unwrap().1.get("connect").is_some());
    await_metric(&h, r#"herald_connections{transport="sse"} 1"#).await;
    drop(sse);
    await_metric(&h, r#"herald_connections{transport="sse"} 0"#).await;
}

#[tokio::test]
async fn http10_streams_are_not_chunked_and_end_with_the_connection() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__DRAIN_SPREAD", "200ms"),
            ("HERALD_SERVER__DRAIN_TIMEOUT", "5s"),
        ],
    )
    .await
    .unwrap();
    let stream = TcpStream::connect(&h.client_addr).await.unwrap();
    let target = sse_target(&h.token("old"), "");
    let mut sse = Raw::open_with(stream, &h.client_addr, &target, "", "1.0")
        .await
        .unwrap();
    assert_eq!(sse.status(), "200", "{}", sse.head);
    assert_eq!(sse.header("transfer-encoding"), None);
    assert_eq!(sse.header("connection"), Some("close"));
    assert!(sse.next_data().await.unwrap().1.get("connect").is_some());
    h.publish("user:old", json!(1)).await.unwrap();
    assert_eq!(sse.next_data().await.unwrap().1["pub"]["data"], 1);
    h.terminate().unwrap();
    let (_, event) = sse.next_data().await.unwrap();
    assert_eq!(event["disconnect"]["code"], 3001);
    assert!(sse.closes().await.unwrap());
    assert!(sse.body.is_empty(), "the disconnect event is the last");
}

#[tokio::test]
async fn a_stream_asked_for_after_another_request_on_the_connection_still_works() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut stream = TcpStream::connect(&h.client_addr).await.unwrap();
    let health = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", h.client_addr);
    stream.write_all(health.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after the first answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("/health answered");
    let target = sse_target(&h.token("later"), "stock:LATER");
    let mut sse = Raw::open_with(stream, &h.client_addr, &target, "", "1.1")
        .await
        .unwrap();
    assert_eq!(sse.status(), "200", "{}", sse.head);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert!(sse.next_data().await.unwrap().1.get("connect").is_some());
    assert_eq!(sse.next_data().await.unwrap().1["channel"], "stock:LATER");
    h.publish("stock:LATER", json!("hi")).await.unwrap();
    assert_eq!(sse.next_data().await.unwrap().1["pub"]["data"], "hi");
}
