//! Emulation requests sent to one node: they reach that node and no other,
//! JSON and Protobuf frames byte for byte, and a node nobody runs is
//! reported (where the engine can tell). Run against every engine by
//! `engine_conformance`.

use std::time::Duration;

use bytes::Bytes;
use herald_core::control::{ClientFrame, Emulation};

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
            data: ClientFrame::Json(format!("{{\"id\":{attempt},\"ping\":{{}}}}\n{{}}")),
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
    let ClientFrame::Json(json) = &got[0].data else {
        panic!("{:?}", got[0].data)
    };
    assert!(json.ends_with("\"ping\":{}}\n{}"), "{json:?}");
    let binary = Emulation {
        session: "s2".into(),
        data: ClientFrame::Protobuf(Bytes::from_static(&[3, 8, 0xff, b'\n', 0])),
    };
    assert!(sender.send_to_node(&target.uid, &binary).await.unwrap());
    let arrived = || target.emulations().iter().any(|e| e.session == "s2");
    assert!(holds_within(Duration::from_secs(5), arrived).await);
    let got = target.emulations();
    let last = got.iter().find(|e| e.session == "s2").unwrap();
    assert_eq!(last, &binary, "Protobuf frames arrive byte for byte");
    for (_, other) in &nodes[..nodes.len() - 1] {
        assert!(other.emulations().is_empty(), "node {} got it", other.uid);
    }
    let nobody = Emulation {
        session: "s1".into(),
        data: ClientFrame::Json("{}".into()),
    };
    let reached = sender.send_to_node("nobody", &nobody).await.unwrap();
    // A Cluster cannot count a plain PUBLISH's receivers on other shards.
    assert_eq!(reached, matches!(backend, Backend::Cluster(_)));
    for (engine, _) in &nodes {
        engine.close().await;
    }
}
