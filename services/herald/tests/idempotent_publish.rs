//! Idempotent publishing across nodes: two real `herald` processes on one
//! Redis (one `all`, one `publisher`) and a WebSocket subscriber. The same
//! publish with the same `idempotency_key`, sent to one node and retried on
//! the other, is delivered once and both answer the same offset and epoch.

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::resp::Reply;
use herald_testkit::RedisServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

async fn node(redis: &RedisServer, role: &str) -> Herald {
    let url = redis.url();
    Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__ROLE", role),
            ("HERALD_ENGINE__REDIS_URL", &url),
            ("HERALD_NAMESPACES__FEED__HISTORY_SIZE", "100"),
            ("HERALD_NAMESPACES__FEED__HISTORY_TTL", "5m"),
        ],
    )
    .await
    .unwrap()
}

/// Calls `method` and returns its result, failing on an error reply.
async fn call(node: &Herald, method: &str, body: &Value) -> Value {
    let (status, reply) = node.api(method, body.clone()).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("error").is_none(), "{method}: {reply}");
    reply["result"].clone()
}

/// Publication pushes up to and including the one whose data is `last`.
async fn pushes_until(client: &mut Client, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let push = client.next_push().await.unwrap();
        let done = push["pub"]["data"]["n"] == last;
        seen.push(push);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_retry_on_another_node_is_delivered_once_with_the_first_offset() {
    let redis = RedisServer::start().await.unwrap();
    let a = node(&redis, "all").await;
    let b = node(&redis, "publisher").await;
    let (mut sub, _) = Client::connect(&a.ws_url(), &a.token("u")).await.unwrap();
    for channel in ["feed:idem", "plain-idem"] {
        let reply = sub
            .command(json!({"subscribe": {"channel": channel}}))
            .await
            .unwrap();
        assert!(reply.get("error").is_none(), "{reply}");
    }

    let publish = json!({"channel": "feed:idem", "data": {"n": "1"}, "idempotency_key": "order-1"});
    let first = call(&a, "publish", &publish).await;
    let retry = call(&b, "publish", &publish).await;
    println!("idempotent publish: node A answered {first}, node B answered {retry}");
    assert_eq!(first["offset"], 1, "{first}");
    assert!(first["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(retry, first, "the retry answers the first position");

    let broadcast = json!({"channels": ["feed:idem", "plain-idem"], "data": {"n": "b"},
        "idempotency_key": "order-2"});
    let sent = call(&b, "broadcast", &broadcast).await;
    let again = call(&a, "broadcast", &broadcast).await;
    println!("idempotent broadcast: node B answered {sent}, node A answered {again}");
    assert_eq!(sent["responses"][0]["result"]["offset"], 2, "{sent}");
    assert_eq!(again, sent);

    let end = json!({"channel": "feed:idem", "data": {"n": "end"}});
    assert_eq!(call(&b, "publish", &end).await["offset"], 3);
    call(
        &b,
        "publish",
        &json!({"channel": "plain-idem", "data": {"n": "end"}}),
    )
    .await;
    let mut pushes = pushes_until(&mut sub, "end").await;
    pushes.extend(pushes_until(&mut sub, "end").await);
    let delivered = |channel: &str| -> Vec<(Value, Value)> {
        let of_channel = pushes.iter().filter(|p| p["channel"] == channel);
        of_channel
            .map(|p| (p["pub"]["data"]["n"].clone(), p["pub"]["offset"].clone()))
            .collect()
    };
    let (feed, plain) = (delivered("feed:idem"), delivered("plain-idem"));
    println!("deliveries: feed:idem {feed:?}, plain-idem {plain:?}");
    assert_eq!(
        feed,
        [
            (json!("1"), json!(1)),
            (json!("b"), json!(2)),
            (json!("end"), json!(3))
        ]
    );
    assert_eq!(
        plain,
        [(json!("b"), Value::Null), (json!("end"), Value::Null)]
    );

    let history = call(&a, "history", &json!({"channel": "feed:idem", "limit": 10})).await;
    assert_eq!(
        history["publications"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );
    let ttl = redis
        .cmd(&["TTL", "herald.idem.{feed:idem}.order-1"])
        .await
        .unwrap();
    println!("first result kept in Redis for {ttl:?} s");
    assert!(
        matches!(ttl, Reply::Int(s) if (1..=300).contains(&s)),
        "{ttl:?}"
    );
}

#[tokio::test]
async fn idempotency_keys_are_at_most_128_bytes_and_empty_means_none() {
    let redis = RedisServer::start().await.unwrap();
    let b = node(&redis, "publisher").await;
    let key = "k".repeat(129);
    for (method, target) in [
        ("publish", json!({"channel": "feed:k"})),
        ("broadcast", json!({"channels": ["feed:k"]})),
    ] {
        let mut body = target;
        body["data"] = json!({});
        body["idempotency_key"] = json!(key);
        let (status, reply) = b.api(method, body).await.unwrap();
        assert_eq!(
            (status, reply["error"]["code"].as_u64()),
            (200, Some(107)),
            "{reply}"
        );
    }
    let ok = json!({"channel": "feed:k", "data": {}, "idempotency_key": "k".repeat(128)});
    assert_eq!(call(&b, "publish", &ok).await["offset"], 1);
    // Centrifugo's API treats an empty key as none: both publish.
    let unkeyed = json!({"channel": "feed:k", "data": {}, "idempotency_key": ""});
    assert_eq!(call(&b, "publish", &unkeyed).await["offset"], 2);
    assert_eq!(call(&b, "publish", &unkeyed).await["offset"], 3);
}
