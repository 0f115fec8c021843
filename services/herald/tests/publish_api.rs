//! The server API: authentication, errors, and every method's effect on real
//! WebSocket clients.

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

async fn herald() -> Herald {
    Herald::start(
        BIN,
        &[
            ("HERALD_NAMESPACES__ROOM__PRESENCE", "true"),
            ("HERALD_NAMESPACES__ROOM__HISTORY_SIZE", "10"),
            ("HERALD_NAMESPACES__ROOM__HISTORY_TTL", "1m"),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn keys_are_required_and_errors_are_clear() {
    let h = herald().await;
    let body = json!({"channel": "stock:A", "data": {}});
    assert_eq!(
        h.api_with_key("publish", body.clone(), None)
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        h.api_with_key("publish", body.clone(), Some("wrong"))
            .await
            .unwrap()
            .0,
        401
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/publish", h.internal_addr))
        .header(
            "Authorization",
            format!("apikey {}", herald_testkit::herald::API_KEY),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = h.api("publish", json!("not an object")).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(107)));
    let (status, body) = h
        .api("publish", json!({"channel": "nope:1", "data": 1}))
        .await
        .unwrap();
    assert_eq!((status, body["error"]["code"].as_u64()), (200, Some(102)));
    let (status, body) = h
        .api("publish", json!({"channel": "stock:A"}))
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], 107, "{status} {body}");
    let (status, _) = h.api("no_such_method", json!({})).await.unwrap();
    assert_eq!(status, 404);
    // The client port never serves the API.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/publish", h.client_addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn publish_broadcast_and_batch_reach_subscribers() {
    let h = herald().await;
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("7")).await.unwrap();
    c.command(json!({"subscribe": {"channel": "stock:B"}}))
        .await
        .unwrap();
    let (_, body) = h
        .api(
            "broadcast",
            json!({"channels": ["user:7", "stock:B", "bad:x"], "data": {"v": 1}}),
        )
        .await
        .unwrap();
    let responses = body["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0]["result"]["offset"], 1);
    assert_eq!(responses[2]["error"]["code"], 102);
    let mut seen = [c.next_push().await.unwrap(), c.next_push().await.unwrap()];
    seen.sort_by_key(|p| p["channel"].as_str().unwrap().to_owned());
    assert_eq!(seen[0]["channel"], "stock:B");
    assert_eq!(seen[1]["channel"], "user:7");
    assert_eq!(seen[1]["pub"]["data"], json!({"v": 1}));

    let (_, body) = h
        .api(
            "batch",
            json!({"commands": [
                {"publish": {"channel": "user:7", "data": {"n": 2}}},
                {"publish": {"channel": "nope:1", "data": 1}},
                {"history": {"channel": "user:7", "limit": 10}}
            ]}),
        )
        .await
        .unwrap();
    assert!(
        body.get("result").is_none(),
        "replies at the top level: {body}"
    );
    let replies = body["replies"].as_array().unwrap();
    assert_eq!(replies[0]["publish"]["offset"], 2);
    assert_eq!(replies[1]["error"]["code"], 102);
    assert_eq!(
        replies[2]["history"]["publications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.next_push().await.unwrap()["pub"]["data"]["n"], 2);
}

#[tokio::test]
async fn subscribe_unsubscribe_and_disconnect_act_on_users() {
    let h = herald().await;
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("9")).await.unwrap();
    let (status, _) = h
        .api("subscribe", json!({"user": "9", "channel": "room:1"}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let push = c.next_push().await.unwrap();
    assert_eq!(push["channel"], "room:1");
    assert_eq!(push["subscribe"]["recoverable"], true, "{push}");
    h.publish("room:1", json!("hello")).await.unwrap();
    assert_eq!(c.next_push().await.unwrap()["pub"]["data"], "hello");

    let (_, body) = h
        .api("presence_stats", json!({"channel": "room:1"}))
        .await
        .unwrap();
    assert_eq!(body["result"], json!({"num_clients": 1, "num_users": 1}));
    let (_, body) = h
        .api("channels", json!({"pattern": "room:*"}))
        .await
        .unwrap();
    assert_eq!(body["result"]["channels"]["room:1"]["num_clients"], 1);
    let (_, body) = h.api("info", json!({})).await.unwrap();
    assert_eq!(body["result"]["nodes"][0]["num_clients"], 1);

    h.api("unsubscribe", json!({"user": "9", "channel": "room:1"}))
        .await
        .unwrap();
    let push = c.next_push().await.unwrap();
    assert_eq!(push["unsubscribe"]["code"], 2000, "{push}");
    let (_, body) = h
        .api("presence", json!({"channel": "room:1"}))
        .await
        .unwrap();
    assert_eq!(body["result"]["presence"], json!({}));

    h.api("history_remove", json!({"channel": "room:1"}))
        .await
        .unwrap();
    let (_, body) = h
        .api("history", json!({"channel": "room:1", "limit": -1}))
        .await
        .unwrap();
    assert!(body["result"].get("publications").is_none(), "{body}");
    assert_eq!(body["result"]["offset"], 1, "position survives: {body}");

    h.api("disconnect", json!({"user": "9"})).await.unwrap();
    let (code, reason) = c.closed().await.unwrap();
    assert_eq!((code, reason.as_str()), (3503, "force disconnect"));
}

#[tokio::test]
async fn batches_through_redis_keep_their_publishes_in_command_order() {
    let redis = herald_testkit::RedisServer::start().await.unwrap();
    let url = redis.url();
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_ENGINE__REDIS_URL", &url),
            ("HERALD_NAMESPACES__ROOM__HISTORY_SIZE", "1000"),
            ("HERALD_NAMESPACES__ROOM__HISTORY_TTL", "1m"),
        ],
    )
    .await
    .unwrap();
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("8")).await.unwrap();
    let (status, _) = h
        .api("subscribe", json!({"user": "8", "channel": "room:seq"}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(c.next_push().await.unwrap()["channel"], "room:seq");
    let count = 200;
    for (parallel, first) in [(false, 1), (true, count + 1)] {
        let mut commands: Vec<_> = (0..count)
            .map(|n| json!({"publish": {"channel": "room:seq", "data": {"n": first + n}}}))
            .collect();
        commands.push(json!({"history": {"channel": "room:seq", "limit": -1}}));
        let (status, body) = h
            .api("batch", json!({"commands": commands, "parallel": parallel}))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let replies = body["replies"].as_array().unwrap();
        let mut offsets: Vec<u64> = replies[..count]
            .iter()
            .map(|r| r["publish"]["offset"].as_u64().unwrap())
            .collect();
        if parallel {
            // Only a sequential batch promises command order.
            offsets.sort_unstable();
        }
        let expected: Vec<u64> = (first..first + count).map(|n| n as u64).collect();
        assert_eq!(offsets, expected, "parallel: {parallel}");
        if !parallel {
            // The history command waits for the publishes before it.
            let kept = replies[count]["history"]["publications"]
                .as_array()
                .unwrap();
            assert_eq!(kept.len(), count, "{}", replies[count]);
        }
        for n in first..first + count {
            let push = c.next_push().await.unwrap();
            assert_eq!(push["pub"]["offset"], n, "{push}");
            if !parallel {
                assert_eq!(push["pub"]["data"]["n"], n, "{push}");
            }
        }
    }
}
