//! Emulation requests sent to one node: they reach that node and no other,
//! and a node nobody runs is reported (where the engine can tell). Run
//! against every engine by `engine_conformance`.

use std::time::Duration;

use herald_core::control::Emulation;

use super::backend::{recorders, Backend};
use super::recorder::*;

pub async fn emulation_reaches_the_named_node_only(backend: &Backend) {
    let nodes = backend
        .nodes("emulation", &recorders(&["a", "b", "c"]))
        .await;
    let sender = &nodes[0].0;
    let target = &nodes[nodes.len() - 1].1;
    // Pub/sub keeps nothing: in a Cluster whose topology is still settling a
    // request may be missed; send until one arrives, each arrives at most once.
    let mut sent = 0;
    for attempt in 1.. {
        let request = Emulation {
            session: "s1".into(),
            data: format!("{{\"id\":{attempt},\"ping\":{{}}}}\n{{}}"),
        };
        assert!(sender.send_to_node(&target.uid, &request).await.unwrap());
        sent += 1;
        if holds_within(Duration::from_secs(2), || !target.emulations().is_empty()).await {
            break;
        }
        assert!(attempt < 20, "the request never reached its node");
    }
    let got = target.emulations();
    assert!(got.len() <= sent);
    assert_eq!(got[0].session, "s1");
    assert!(
        got[0].data.ends_with("\"ping\":{}}\n{}"),
        "{:?}",
        got[0].data
    );
    for (_, other) in &nodes[..nodes.len() - 1] {
        assert!(other.emulations().is_empty(), "node {} got it", other.uid);
    }
    let nobody = Emulation {
        session: "s1".into(),
        data: "{}".into(),
    };
    let reached = sender.send_to_node("nobody", &nobody).await.unwrap();
    // A Cluster cannot count a plain PUBLISH's receivers on other shards.
    assert_eq!(reached, matches!(backend, Backend::Cluster(_)));
    for (engine, _) in &nodes {
        engine.close().await;
    }
}
