//! The Redis engine against a real 3-master Redis Cluster: sharded pub/sub,
//! per-slot scripts, exactly-once delivery across two nodes with channels over
//! every master, gap filling after killed subscriber connections, control and nodes.

#[path = "support/recorder.rs"]
mod recorder;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use herald_core::control::Command;
use herald_core::engine::{HistoryQuery, PresenceStats, PublishOptions};
use herald_core::ClientInfo;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_presence_join_leave_control_and_nodes() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let config = recorder::cluster(cluster.seeds(), &prefix("cluster-ctl"));
    let (ra, rb) = (Recorder::new("a"), Recorder::new("b"));
    let a = start(&config, ra.clone()).await;
    let b = start(&config, rb.clone()).await;

    let uids: Vec<String> = b
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.uid)
        .collect();
    assert_eq!(uids, ["a", "b"]);

    let cmd = Command::Refresh {
        user: "7".into(),
        client: None,
        expired: true,
        expire_at: 0,
    };
    // Pub/sub keeps nothing: a node whose subscriber connection is being re-established
    // (as happens while a new cluster's topology settles) misses what is published
    // meanwhile. Send until both nodes have it; nothing else may arrive.
    let reached_both = || [&ra, &rb].iter().all(|r| !r.controls().is_empty());
    for attempt in 1.. {
        b.publish_control(&cmd).await.unwrap();
        if holds_within(Duration::from_secs(2), reached_both).await {
            break;
        }
        assert!(attempt < 20, "the control command never reached both nodes");
    }
    for rec in [&ra, &rb] {
        let controls = rec.controls();
        assert!(controls.iter().all(|c| *c == cmd), "{controls:?}");
    }

    let info = |c: &str| ClientInfo {
        user: "u".into(),
        client: c.into(),
        conn_info: None,
        chan_info: None,
    };
    for i in 0..6 {
        let ch = channel(&format!("pres:room{i}"));
        a.subscribe(&ch).await.unwrap();
        b.add_presence(&ch, &info("c1")).await.unwrap();
        b.add_presence(&ch, &info("c2")).await.unwrap();
        assert_eq!(
            a.presence_stats(&ch).await.unwrap(),
            PresenceStats {
                num_clients: 2,
                num_users: 1
            }
        );
        b.publish_join(&ch, &info("c1")).await.unwrap();
        b.publish(&ch, data("x"), PublishOptions::default())
            .await
            .unwrap();
        b.publish_leave(&ch, &info("c1")).await.unwrap();
        let name = ch.name().to_owned();
        eventually(WAIT, "join, publication, leave", || {
            ra.seen(&name).len() >= 3
        })
        .await;
        assert_eq!(
            ra.seen(&name),
            [
                Seen::Join("c1".into()),
                Seen::Pub {
                    offset: 0,
                    data: data_text("x")
                },
                Seen::Leave("c1".into())
            ]
        );
    }
    a.close().await;
    b.close().await;
}
