//! A whole node in the test's own process, on ports it bound itself
//! (`127.0.0.1:0`): it serves clients and the server API, and stopping it
//! drains its connections, ends every task it owns and releases its ports.

use std::time::Duration;

use herald_node::{bind, Config, Listeners, Node};
use herald_testkit::client::Client;
use herald_testkit::herald::{now, token, API_KEY, SECRET};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn start() -> Node {
    let mut config = Config::new("in-process");
    config.auth.hmac_secret = Some(SECRET.into());
    config.api.key = Some(API_KEY.into());
    config.drain_spread = Duration::from_millis(200);
    config.drain_timeout = Duration::from_secs(5);
    let listeners = Listeners {
        client: Some(bind("127.0.0.1:0".parse().unwrap()).unwrap()),
        internal: bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    Node::start(config, listeners).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_its_bound_ports_and_stops_with_nothing_left_running() {
    let node = start().await;
    let client_addr = node.client_addr().expect("role all has a client listener");
    let internal_addr = node.internal_addr();
    assert_ne!(
        client_addr.port(),
        0,
        "the bound port, not the requested one"
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(node.run(stop.clone().cancelled_owned()));

    let url = format!("ws://{client_addr}/connection/websocket");
    let (mut client, connected) =
        Client::connect(&url, &token(&json!({"sub": "ann", "exp": now() + 60})))
            .await
            .unwrap();
    assert!(connected["subs"].get("user:ann").is_some(), "{connected}");
    let published = reqwest::Client::new()
        .post(format!("http://{internal_addr}/api/publish"))
        .header("X-API-Key", API_KEY)
        .body(json!({"channel": "user:ann", "data": {"n": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let push = client.next_push().await.unwrap();
    assert_eq!(push["pub"]["data"], json!({"n": 1}));

    let asked = Instant::now();
    stop.cancel();
    assert_eq!(
        client.closed().await.unwrap(),
        (3001, "shutdown".to_owned())
    );
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("run returns once every task has ended, long before the deadline")
        .unwrap();
    println!("in-process node stopped in {:?}", asked.elapsed());
    assert!(
        tokio::net::TcpStream::connect(client_addr).await.is_err(),
        "the client port is released"
    );
    assert!(tokio::net::TcpStream::connect(internal_addr).await.is_err());
}

#[tokio::test]
async fn a_gateway_without_a_client_listener_does_not_start() {
    let mut config = Config::new("no-client");
    config.auth.hmac_secret = Some(SECRET.into());
    let listeners = Listeners {
        client: None,
        internal: bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    let err = Node::start(config, listeners).await.err().expect("refused");
    assert_eq!(err.to_string(), "role all needs a client listener");
}
