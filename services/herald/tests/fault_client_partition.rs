//! A WebSocket client whose packets are silently dropped (iptables on its TCP
//! flow over loopback): the server's ping/pong rule cuts it off with 3012 and
//! its session leaves the hub, while another client on the same gateway is
//! untouched; after the partition heals, the client reconnects and recovers
//! exactly the publications it missed.

#[path = "support/faults.rs"]
mod faults;

use std::collections::HashSet;
use std::time::Duration;

use faults::*;
use herald_testkit::herald::Herald;
use herald_testkit::netns::Rules;
use herald_testkit::RedisServer;
use serde_json::json;
use tokio::time::Instant;

const CHANNEL: &str = "feed:partition";
const PING_INTERVAL: Duration = Duration::from_secs(2);
const PONG_TIMEOUT: Duration = Duration::from_secs(1);
/// The series of the victim's cut-off (the SSE series of the code is 0).
const WS_3012: &str = r#"{code="3012",transport="websocket"}"#;

#[tokio::test]
async fn a_silent_client_is_cut_off_by_the_pong_rule_then_recovers_without_loss() {
    let redis = RedisServer::start().await.unwrap();
    let h = node(
        "all",
        &redis.url(),
        &[
            ("HERALD_CLIENT__PING_INTERVAL", "2s"),
            ("HERALD_CLIENT__PONG_TIMEOUT", "1s"),
        ],
    )
    .await;
    let gateway_port = port_of(&h.client_addr);

    let mut placed = vec![u64::MAX];
    let mut victim = connect(&h, "victim").await;
    let epoch = subscribe(&mut victim, CHANNEL, json!({})).await["epoch"].clone();
    let victim_port = single(peer_ports(gateway_port));
    let mut bystander = connect(&h, "bystander").await;
    subscribe(&mut bystander, CHANNEL, json!({})).await;
    // The bystander reads (and so answers pings) all along, in its own task.
    let bystander = tokio::spawn(async move {
        let seen = take_publications(&mut bystander, CHANNEL, 7).await;
        (bystander, seen)
    });
    for n in 1..=3 {
        placed.push(n);
        assert_eq!(publish_until_accepted(&h, CHANNEL, n).await.0, n);
    }
    let seen = take_publications(&mut victim, CHANNEL, 3).await;
    assert_exactly_once_in_order("victim", &seen, 1, &placed);

    let partition = Rules::new();
    partition
        .cut_loopback_flow(gateway_port, victim_port)
        .unwrap();
    let cut = Instant::now();
    for n in 4..=6 {
        placed.push(n);
        assert_eq!(publish_until_accepted(&h, CHANNEL, n).await.0, n);
    }
    let cut_off_after = await_cut_off(&h, cut).await;
    assert!(
        cut_off_after < PING_INTERVAL * 2 + PONG_TIMEOUT + Duration::from_secs(1),
        "cut off only after {cut_off_after:?}"
    );

    partition.clear();
    let mut back = connect(&h, "victim").await;
    let missed = recover(&mut back, CHANNEL, 3, &epoch).await;
    assert_exactly_once_in_order("recovered", &missed, 4, &placed);
    assert_eq!(missed.len(), 3, "{missed:?}");

    placed.push(7);
    assert_eq!(publish_until_accepted(&h, CHANNEL, 7).await.0, 7);
    assert_eq!(take_publications(&mut back, CHANNEL, 1).await, [(7, 7)]);
    let (mut bystander, seen) = bystander.await.unwrap();
    assert_exactly_once_in_order("bystander", &seen, 1, &placed);
    let pong = bystander.command(json!({ "ping": {} })).await.unwrap();
    assert!(pong.get("error").is_none(), "{pong}");
    let metrics = h.metrics().await;
    let disconnects: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("herald_disconnects_total{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(disconnects.len(), 1, "only the victim's: {disconnects:?}");
    assert_eq!(value(&metrics, "herald_disconnects_total", WS_3012), 1.0);
    // What the connection from before the partition learns once packets flow again.
    let old_end = tokio::time::timeout(Duration::from_secs(3), victim.closed()).await;
    println!(
        "client partition: cut off (3012, session gone) {cut_off_after:?} after the cut; \
         the old connection then saw {old_end:?}"
    );
}

/// Waits until the gateway counts a 3012 disconnect and one connection (the
/// bystander) is left; returns how long that took.
async fn await_cut_off(h: &Herald, since: Instant) -> Duration {
    loop {
        let metrics = h.metrics().await;
        let disconnects = value(&metrics, "herald_disconnects_total", WS_3012);
        let connections = value(&metrics, "herald_connections", r#"transport="websocket""#);
        if disconnects >= 1.0 && connections == 1.0 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DEADLINE,
            "no 3012 cut-off ({disconnects} disconnects, {connections} connections); log:\n{}",
            h.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the first sample of `name` whose labels contain `label`.
fn value(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// Local ports of the clients connected to `port` on loopback (from `ss`).
fn peer_ports(port: u16) -> HashSet<u16> {
    let out = std::process::Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn single(ports: HashSet<u16>) -> u16 {
    assert_eq!(ports.len(), 1, "exactly one client connected: {ports:?}");
    ports.into_iter().next().expect("one")
}
