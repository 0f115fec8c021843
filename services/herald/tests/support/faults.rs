//! Helpers shared by the network fault drills: nodes on a given Redis,
//! subscribers of one channel with history, idempotent publishing through the
//! server API, and checks that a subscriber saw each publication once, in order.

#![allow(dead_code)]

use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use serde_json::{json, Value};
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Longest wait for a readiness change or a whole stream of pushes.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Starts a node of `role` on `redis_url`; namespace `feed` keeps 1000 publications.
pub async fn node(role: &str, redis_url: &str, extra: &[(&str, &str)]) -> Herald {
    let mut env = vec![
        ("HERALD_SERVER__ROLE", role),
        ("HERALD_ENGINE__REDIS_URL", redis_url),
        ("HERALD_NAMESPACES__FEED__HISTORY_SIZE", "1000"),
        ("HERALD_NAMESPACES__FEED__HISTORY_TTL", "300s"),
    ];
    env.extend_from_slice(extra);
    Herald::start(BIN, &env).await.unwrap()
}

/// A connected client of `user` on gateway `h`.
pub async fn connect(h: &Herald, user: &str) -> Client {
    Client::connect(&h.ws_url(), &h.token(user))
        .await
        .unwrap()
        .0
}

/// Subscribes `channel` with extra fields (`recover`, `offset`, `epoch`); returns the result.
pub async fn subscribe(client: &mut Client, channel: &str, extra: Value) -> Value {
    let mut request = json!({ "channel": channel });
    for (k, v) in extra.as_object().expect("an object") {
        request[k] = v.clone();
    }
    let reply = client
        .command(json!({ "subscribe": request }))
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    reply["subscribe"].clone()
}

/// One publish attempt with an idempotency key: HTTP status, body, time taken.
pub async fn try_publish(h: &Herald, channel: &str, n: u64) -> (u16, Value, Duration) {
    let started = Instant::now();
    let body = json!({
        "channel": channel,
        "data": { "n": n },
        "idempotency_key": format!("n-{n}"),
    });
    let (status, reply) = h.api("publish", body).await.unwrap_or((0, Value::Null));
    (status, reply, started.elapsed())
}

/// Publishes `{"n": n}` with idempotency key `n-<n>`, retrying failures (as a
/// backend must, not knowing whether a failed attempt took effect) until
/// accepted; returns the offset and the number of failed attempts.
pub async fn publish_until_accepted(h: &Herald, channel: &str, n: u64) -> (u64, u32) {
    let deadline = Instant::now() + DEADLINE;
    let mut failures = 0;
    loop {
        let (status, reply, _) = try_publish(h, channel, n).await;
        if status == 200 {
            if let Some(offset) = reply["result"]["offset"].as_u64() {
                return (offset, failures);
            }
        }
        failures += 1;
        assert!(
            Instant::now() < deadline,
            "publication {n} never accepted: {status} {reply}"
        );
        // Backing off between attempts is the client's policy, not synchronisation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads pushes until `count` publications of `channel` have arrived; returns
/// their `(offset, n)` in arrival order.
pub async fn take_publications(
    client: &mut Client,
    channel: &str,
    count: usize,
) -> Vec<(u64, u64)> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let push = client.next_push().await.unwrap();
        if push["channel"] != channel || push.get("pub").is_none() {
            continue;
        }
        seen.push(offset_and_n(&push["pub"]));
    }
    seen
}

/// Subscribes `client` with recovery from `offset` in `epoch`; asserts the
/// recovery succeeded and returns the recovered `(offset, data.n)` pairs.
pub async fn recover(
    client: &mut Client,
    channel: &str,
    offset: u64,
    epoch: &Value,
) -> Vec<(u64, u64)> {
    let extra = json!({ "recover": true, "offset": offset, "epoch": epoch });
    let reply = subscribe(client, channel, extra).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    reply["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(offset_and_n)
        .collect()
}

/// `(offset, data.n)` of a publication.
pub fn offset_and_n(publication: &Value) -> (u64, u64) {
    (
        publication["offset"].as_u64().expect("an offset"),
        publication["data"]["n"].as_u64().expect("data.n"),
    )
}

/// Asserts that `seen` is exactly offsets `first..` one at a time, each
/// carrying the publication the API placed at that offset (`placed[offset]`).
pub fn assert_exactly_once_in_order(who: &str, seen: &[(u64, u64)], first: u64, placed: &[u64]) {
    for (i, (offset, n)) in seen.iter().enumerate() {
        let want = first + i as u64;
        assert_eq!(
            *offset, want,
            "{who}: offsets not contiguous at {i}: {seen:?}"
        );
        assert_eq!(
            placed.get(*offset as usize).copied(),
            Some(*n),
            "{who}: offset {offset} carries publication {n}"
        );
    }
}

/// Polls `/readyz` until it answers `want`; returns how long that took.
pub async fn await_readyz(h: &Herald, want: u16, since: Instant) -> Duration {
    loop {
        if h.readyz().await == Some(want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DEADLINE,
            "/readyz never answered {want}; log:\n{}",
            h.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
