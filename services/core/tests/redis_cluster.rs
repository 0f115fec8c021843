//! What only Redis Cluster brings, against a real 3-master cluster: sharded
//! pub/sub and per-slot scripts with channels over every master, and gap
//! filling after every master's subscriber connections were killed. The
//! contract every engine keeps is in `engine_conformance.rs`.

#[path = "support/recorder.rs"]
mod recorder;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use herald_core::engine::{HistoryQuery, PublishOptions};
use herald_testkit::RedisCluster;
use recorder::*;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_delivers_exactly_once_over_every_master() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let config = recorder::cluster(cluster.seeds(), &prefix("cluster"));
    let (ra, rb) = (Recorder::new("a"), Recorder::new("b"));
    let (ma, mb) = (herald_core::Metrics::new(), herald_core::Metrics::new());
    let a = start_with(&config, ra.clone(), ma.clone()).await;
    let b = start_with(&config, rb.clone(), mb.clone()).await;
    assert!(a.is_ready() && b.is_ready());

    // 60 channels: every master owns some of them.
    let channels: Vec<String> = (0..60).map(|i| format!("h:c{i}")).collect();
    let slots: HashSet<u16> = channels
        .iter()
        .map(|c| fred_slot(c))
        .map(|s| s * 3 / 16384)
        .collect();
    assert_eq!(slots.len(), 3, "channels spread over the three masters");
    let parsed: Vec<_> = channels.iter().map(|c| channel(c)).collect();
    let subscribes = parsed.iter().flat_map(|c| [a.subscribe(c), b.subscribe(c)]);
    for r in join_all(subscribes).await {
        r.unwrap();
    }

    let per_channel = 50; // 3000 publications
    let publishing = channels.iter().enumerate().map(|(i, name)| {
        let (a, b) = (&a, &b);
        async move {
            let ch = channel(name);
            for n in 0..per_channel {
                let engine = if (i + n) % 2 == 0 { a } else { b };
                engine
                    .publish(&ch, data(&format!("{name}-{n}")), PublishOptions::default())
                    .await
                    .unwrap();
            }
        }
    });
    let delivered = || channels.iter().map(|c| ra.offsets(c).len()).sum::<usize>();
    let killing = async {
        // Drop every subscriber connection once, mid-stream, on every master.
        eventually(WAIT, "the stream under way", || delivered() > 300).await;
        for node in cluster.nodes() {
            assert!(node.kill_subscribers().await.unwrap() > 0);
        }
    };
    tokio::join!(join_all(publishing), killing);

    expect_every_publication(&[&ra, &rb], &channels, per_channel, WAIT).await;
    eventually(WAIT, "ready again", || a.is_ready() && b.is_ready()).await;
    let filled = r#"herald_redis_gap_checks_total{outcome="filled"}"#;
    assert!(
        metric(&ma, filled) + metric(&mb, filled) > 0.0,
        "no gap was filled"
    );

    let h = a
        .history(
            &channel("h:c1"),
            HistoryQuery {
                limit: Some(2),
                reverse: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(h.position.offset, per_channel as u64);
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [per_channel as u64, per_channel as u64 - 1]
    );
    a.close().await;
    b.close().await;
}

fn fred_slot(channel: &str) -> u16 {
    // Every key and pub/sub name is hash-tagged by channel: the channel's slot is the name's.
    fred::util::redis_keyslot(channel.as_bytes())
}
