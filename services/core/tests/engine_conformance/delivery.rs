//! Delivery across nodes: every publication exactly once and in offset order on every node,
//! with the trace context it was published with. Run against every engine by
//! `engine_conformance`.

use futures_util::future::join_all;
use herald_core::engine::{Engine, HistoryQuery, PublishOptions};
use herald_core::trace::TraceParent;

use super::backend::{recorders, Backend};
use super::recorder::*;
use super::WAIT;

pub async fn delivers_exactly_once_in_order_across_nodes(backend: &Backend) {
    let nodes = backend.nodes("twonodes", &recorders(&["a", "b"])).await;
    let engines: Vec<&Engine> = nodes.iter().map(|(e, _)| e).collect();
    let recorders: Vec<&Recorder> = nodes.iter().map(|(_, r)| &**r).collect();
    let channels: Vec<String> = (0..40).map(|i| format!("h:ch{i}")).collect();
    let parsed: Vec<_> = channels.iter().map(|c| channel(c)).collect();
    let subscribes = parsed
        .iter()
        .flat_map(|c| engines.iter().map(move |e| e.subscribe(c)));
    for r in join_all(subscribes).await {
        r.unwrap();
    }
    let per_channel = 75; // 3000 publications
    let publishing = channels.iter().enumerate().map(|(i, name)| {
        let engines = &engines;
        async move {
            let ch = channel(name);
            for n in 0..per_channel {
                // Each node publishes into every channel, alternately.
                let engine = engines[(i + n) % engines.len()];
                engine
                    .publish(&ch, data(&format!("{name}-{n}")), PublishOptions::default())
                    .await
                    .unwrap();
            }
        }
    });
    join_all(publishing).await;
    expect_every_publication(&recorders, &channels, per_channel, WAIT).await;
    let first = recorders[0].data(&channels[0]);
    assert_eq!(first[0], data_text(&format!("{}-0", channels[0])));
    for engine in engines {
        engine.close().await;
    }
}

pub async fn a_trace_context_reaches_every_node(backend: &Backend) {
    let nodes = backend.nodes("traced", &recorders(&["a", "b"])).await;
    let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = || PublishOptions {
        trace: TraceParent::parse(text),
        ..Default::default()
    };
    for name in ["h:traced", "plain:traced"] {
        let ch = channel(name);
        for (engine, _) in &nodes {
            engine.subscribe(&ch).await.unwrap();
        }
        let (a, _) = &nodes[0];
        a.publish(&ch, data("1"), traced()).await.unwrap();
        a.publish(&ch, data("2"), PublishOptions::default())
            .await
            .unwrap();
        for (_, recorder) in &nodes {
            eventually(WAIT, "both publications", || {
                recorder.traces(name).len() == 2
            })
            .await;
            assert_eq!(recorder.traces(name), [Some(text.to_owned()), None]);
        }
        let history = a.history(&ch, HistoryQuery::default()).await.unwrap();
        assert!(history.publications.iter().all(|p| p.trace.is_none()));
    }
    for (engine, _) in &nodes {
        engine.close().await;
    }
}
