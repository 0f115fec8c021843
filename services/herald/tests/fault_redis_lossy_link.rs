//! Redis behind a slow, lossy link: 50 ms ± 10 ms each way (a delaying relay,
//! as the kernel has no `netem`) and 2 % of packets dropped both ways on the
//! veth pair into Redis's network namespace. A steady stream of publications
//! through the server API, each retried with its idempotency key until
//! accepted, reaches every subscriber on two gateways exactly once, in order.

#[path = "support/faults.rs"]
mod faults;

use std::time::Duration;

use faults::*;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use herald_testkit::netns::{DelayRelay, Netns};
use serde_json::json;
use tokio::time::Instant;

const CHANNEL: &str = "feed:lossy";
const PUBLICATIONS: u64 = 500;
/// Publishes awaited concurrently, as a backend with a connection pool would.
const IN_FLIGHT: usize = 25;
const SUBSCRIBERS_PER_GATEWAY: usize = 2;

#[tokio::test]
async fn every_subscriber_gets_every_accepted_publication_once_in_order() {
    let net = Netns::create().unwrap();
    let redis = net.start_redis().await.unwrap();
    let relay = DelayRelay::start(
        redis.addr(),
        Duration::from_millis(50),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    let gateways = [
        node("gateway", &relay.url(), &[]).await,
        node("gateway", &relay.url(), &[]).await,
    ];
    let publisher = node("publisher", &relay.url(), &[]).await;
    let mut subscribers = Vec::new();
    for (g, gateway) in gateways.iter().enumerate() {
        for s in 0..SUBSCRIBERS_PER_GATEWAY {
            let mut client = connect(gateway, &format!("g{g}s{s}")).await;
            let reply = subscribe(&mut client, CHANNEL, json!({})).await;
            assert_eq!(reply["offset"].as_u64().unwrap_or(0), 0, "{reply}");
            subscribers.push((format!("gateway {g} subscriber {s}"), client));
        }
    }

    net.loss(0.02).unwrap();
    let started = Instant::now();
    let publishing = stream::iter(1..=PUBLICATIONS)
        .map(|n| {
            let publisher = &publisher;
            async move { (n, publish_until_accepted(publisher, CHANNEL, n).await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>();
    // Subscribers read while the stream runs, as real ones do.
    let receiving = join_all(
        subscribers
            .iter_mut()
            .map(|(_, client)| take_publications(client, CHANNEL, PUBLICATIONS as usize)),
    );
    let (accepted, received) = tokio::join!(publishing, receiving);
    let took = started.elapsed();

    let mut placed = vec![u64::MAX; PUBLICATIONS as usize + 1];
    let mut failed_attempts = 0;
    for (n, (offset, failures)) in &accepted {
        failed_attempts += failures;
        let slot = placed
            .get_mut(*offset as usize)
            .unwrap_or_else(|| panic!("publication {n} at offset {offset}, past the end"));
        assert_eq!(*slot, u64::MAX, "two publications at offset {offset}");
        *slot = *n;
    }
    for ((who, _), seen) in subscribers.iter().zip(&received) {
        assert_exactly_once_in_order(who, seen, 1, &placed);
    }
    // Nothing more is on its way: the next push anyone sees is the next publication.
    let next = PUBLICATIONS + 1;
    placed.push(next);
    assert_eq!(
        publish_until_accepted(&publisher, CHANNEL, next).await.0,
        next
    );
    for (who, client) in &mut subscribers {
        let seen = take_publications(client, CHANNEL, 1).await;
        assert_eq!(seen, [(next, next)], "{who}: a duplicate or a stray");
    }

    let dropped = net.dropped_packets().unwrap();
    assert!(dropped > 0, "the link lost nothing: the drill did not run");
    let mut gap_checks = String::new();
    for gateway in &gateways {
        let metrics = gateway.metrics().await;
        let line = metrics
            .lines()
            .filter(|l| l.starts_with("herald_redis_gap_checks_total"))
            .collect::<Vec<_>>()
            .join(", ");
        gap_checks.push_str(&format!("[{line}] "));
    }
    println!(
        "lossy link: {PUBLICATIONS} publications accepted in {took:?} with {failed_attempts} \
         failed attempts retried, {dropped} packets dropped; {} subscribers got each once in \
         order; gap checks {gap_checks}",
        subscribers.len()
    );
}
