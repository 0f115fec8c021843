//! Presence, join/leave, control commands and node discovery: what one node's clients and
//! commands look like from every node. Run against every engine by `engine_conformance`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald_core::control::Command;
use herald_core::engine::{Handler, PresenceStats, PublishOptions};

use super::backend::{recorders, Backend};
use super::recorder::*;
use super::{info, WAIT};

pub async fn presence_counts_clients_and_users(backend: &Backend) {
    let nodes = backend.nodes("presence", &recorders(&["a"])).await;
    let engine = &nodes[0].0;
    let ch = channel("pres:room");
    for (user, client) in [("u1", "c1"), ("u1", "c2"), ("u2", "c3")] {
        engine.add_presence(&ch, &info(user, client)).await.unwrap();
    }
    let stats = engine.presence_stats(&ch).await.unwrap();
    assert_eq!(
        stats,
        PresenceStats {
            num_clients: 3,
            num_users: 2
        }
    );
    engine.remove_presence(&ch, "c3").await.unwrap();
    let p = engine.presence(&ch).await.unwrap();
    assert_eq!(
        p.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["c1".into(), "c2".into()])
    );
    assert_eq!(p["c1"].user, "u1");
    let stats = engine.presence_stats(&ch).await.unwrap();
    assert_eq!(
        stats,
        PresenceStats {
            num_clients: 2,
            num_users: 1
        }
    );
    engine.close().await;
}

pub async fn join_leave_control_and_nodes_reach_every_node(backend: &Backend) {
    let all = recorders(&["a", "b"]);
    all[0].set_local_channels(&[("x", 2), ("y", 1)]);
    all[1].set_local_channels(&[("x", 3)]);
    let started = Instant::now();
    let nodes = backend.nodes("control", &all).await;
    let mut want_channels: HashMap<String, u64> = HashMap::new();
    for (_, rec) in &nodes {
        for (c, n) in rec.channels(usize::MAX) {
            *want_channels.entry(c).or_default() += n;
        }
    }
    let (a, b) = (&nodes[0].0, &nodes[nodes.len() - 1].0);
    let recorders: Vec<&Recorder> = nodes.iter().map(|(_, r)| &**r).collect();
    let all_uids: Vec<String> = recorders.iter().map(|r| r.uid.clone()).collect();

    let uids: Vec<String> = b
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.uid)
        .collect();
    assert_eq!(uids, all_uids);
    assert_eq!(a.channels().await.unwrap(), want_channels);

    // A node writes its channel map again only when its channels changed; an
    // unchanged map (node b's) stays listed past the expiry of its first write.
    recorders[0].set_local_channels(&[("x", 5), ("z", 1)]);
    let mut want_channels: HashMap<String, u64> = HashMap::new();
    for rec in &recorders {
        for (c, n) in rec.channels(usize::MAX) {
            *want_channels.entry(c).or_default() += n;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = a.channels().await.unwrap();
        if got == want_channels {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channels {got:?}, want {want_channels:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if nodes.len() > 1 {
        tokio::time::sleep_until((started + Duration::from_secs(8)).into()).await;
        assert_eq!(a.channels().await.unwrap(), want_channels);
    }

    // Pub/sub keeps nothing: a node whose subscriber connection is being re-established
    // (as happens while a new cluster's topology settles) misses what is published
    // meanwhile. Send until every node has one; each gets each at most once, in order.
    let mut sent = Vec::new();
    let reached_all = || recorders.iter().all(|r| !r.controls().is_empty());
    for attempt in 1.. {
        let cmd = Command::Disconnect {
            user: "42".into(),
            client: None,
            code: 3000,
            reason: format!("bye {attempt}"),
        };
        a.publish_control(&cmd).await.unwrap();
        sent.push(cmd);
        if holds_within(Duration::from_secs(2), reached_all).await {
            break;
        }
        assert!(attempt < 20, "the control command never reached every node");
    }
    for rec in &recorders {
        let controls = rec.controls();
        let mut rest = sent.iter();
        assert!(
            controls.iter().all(|c| rest.any(|s| s == c)),
            "node {}: {controls:?} is not a subsequence of {sent:?}",
            rec.uid
        );
    }

    for i in 0..6 {
        let ch = channel(&format!("pres:room{i}"));
        for (engine, _) in &nodes {
            engine.subscribe(&ch).await.unwrap();
        }
        b.add_presence(&ch, &info("u", "c1")).await.unwrap();
        b.add_presence(&ch, &info("u", "c2")).await.unwrap();
        assert_eq!(
            a.presence_stats(&ch).await.unwrap(),
            PresenceStats {
                num_clients: 2,
                num_users: 1
            }
        );
        b.publish_join(&ch, &info("u", "c1")).await.unwrap();
        b.publish(&ch, data("hi"), PublishOptions::default())
            .await
            .unwrap();
        b.publish_leave(&ch, &info("u", "c1")).await.unwrap();
        let want = [
            Seen::Join("c1".into()),
            Seen::Pub {
                offset: 0,
                data: data_text("hi"),
            },
            Seen::Leave("c1".into()),
        ];
        for rec in &recorders {
            eventually(WAIT, "join, publication, leave", || {
                rec.seen(ch.name()).len() >= 3
            })
            .await;
            assert_eq!(rec.seen(ch.name()), want, "node {}", rec.uid);
        }
    }

    if nodes.len() > 1 {
        b.close().await;
        let uids: Vec<String> = a
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.uid)
            .collect();
        assert_eq!(uids, ["a"], "a closed node leaves at once");
    }
    a.close().await;
}
