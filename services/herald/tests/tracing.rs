//! Traces across processes: a publisher and two gateways on one Redis export
//! spans to an OTLP receiver. A publish carrying a W3C `traceparent` is one
//! trace: the API span under the caller's span, the engine publish under it,
//! and a delivery span on each gateway under the engine publish, whose
//! context travels in the pub/sub envelope. Without an OTLP endpoint nothing
//! is exported and the envelope carries no trace context; spans still queued
//! at SIGTERM are exported before the process exits.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use herald_testkit::otlp::{tree, OtlpReceiver, ReceivedSpan};
use herald_testkit::resp::Subscriber;
use herald_testkit::RedisServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// The caller's trace and span, as a backend would send them.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
/// A trace the caller did not sample.
const UNSAMPLED_TRACE_ID: &str = "5c1c9e2a4f0e4d7b9a3b2c1d0e9f8a7b";

async fn node(redis: &RedisServer, role: &str, name: &str, otlp: Option<&str>) -> Herald {
    let url = redis.url();
    let mut env = vec![
        ("HERALD_SERVER__ROLE", role),
        ("HERALD_SERVER__NAME", name),
        ("HERALD_ENGINE__REDIS_URL", &url),
    ];
    if let Some(endpoint) = otlp {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
        env.push(("OTEL_BSP_SCHEDULE_DELAY", "100"));
    }
    Herald::start(BIN, &env).await.unwrap()
}

async fn subscriber(gateway: &Herald, channels: &[&str]) -> Client {
    let (mut client, _) = Client::connect(&gateway.ws_url(), &gateway.token("u"))
        .await
        .unwrap();
    for channel in channels {
        let reply = client
            .command(json!({"subscribe": {"channel": channel}}))
            .await
            .unwrap();
        assert!(reply.get("error").is_none(), "{reply}");
    }
    client
}

/// Publishes `data` into `channel` with the caller's trace headers.
async fn publish(publisher: &Herald, channel: &str, data: Value, traceparent: &str) {
    let headers = [("traceparent", traceparent), ("tracestate", "caller=yes")];
    let body = json!({"channel": channel, "data": data});
    let (status, reply) = publisher
        .api_with_headers("publish", body, &headers)
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("result").is_some(), "{reply}");
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn a_publication_is_one_trace_from_the_api_to_each_gateway() {
    let redis = RedisServer::start().await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();
    let endpoint = otlp.endpoint();
    let publisher = node(&redis, "publisher", "publisher-1", Some(&endpoint)).await;
    let a = node(&redis, "gateway", "gateway-a", Some(&endpoint)).await;
    let b = node(&redis, "gateway", "gateway-b", Some(&endpoint)).await;
    let channel = "stock:TRACE";
    let mut clients = [
        subscriber(&a, &[channel]).await,
        subscriber(&b, &[channel]).await,
    ];
    let mut raw = Subscriber::start(&redis.addr(), "herald.pub.{stock:TRACE}")
        .await
        .unwrap();

    let unsampled = format!("00-{UNSAMPLED_TRACE_ID}-{CALLER_SPAN}-00");
    publish(&publisher, channel, json!({"n": 1}), &unsampled).await;
    let sampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    publish(&publisher, channel, json!({"n": 2}), &sampled).await;
    for client in &mut clients {
        for n in [1, 2] {
            let push = client.next_push().await.unwrap();
            assert_eq!(push["pub"]["data"]["n"], n, "{push}");
        }
    }
    let (quiet, traced) = (
        raw.next_message().await.unwrap(),
        raw.next_message().await.unwrap(),
    );

    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            named(spans, "gateway.deliver").len() >= 2
                && !named(spans, "api.publish").is_empty()
                && !named(spans, "engine.publish").is_empty()
        })
        .await
        .unwrap();
    let shown = tree(&spans);
    println!("spans received:\n{shown}");
    let trace_ids: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(trace_ids, BTreeSet::from([TRACE_ID]), "one trace:\n{shown}");
    let [api] = named(&spans, "api.publish")[..] else {
        panic!("one api.publish span:\n{shown}");
    };
    assert_eq!(api.parent_span_id, CALLER_SPAN, "{shown}");
    assert_eq!(api.trace_state, "caller=yes", "{shown}");
    assert_eq!(api.instance(), "publisher-1", "{shown}");
    assert_eq!(api.resource["service.name"], "herald", "{shown}");
    let [engine] = named(&spans, "engine.publish")[..] else {
        panic!("one engine.publish span:\n{shown}");
    };
    assert_eq!(engine.parent_span_id, api.span_id, "{shown}");
    assert_eq!(engine.attributes["channel"], channel, "{shown}");

    let delivers = named(&spans, "gateway.deliver");
    let nodes: BTreeSet<&str> = delivers.iter().map(|s| s.instance()).collect();
    assert_eq!(nodes, BTreeSet::from(["gateway-a", "gateway-b"]), "{shown}");
    for deliver in &delivers {
        assert_eq!(deliver.parent_span_id, engine.span_id, "{shown}");
        assert_eq!(deliver.attributes["node"], deliver.instance(), "{shown}");
        assert_eq!(deliver.attributes["channel"], channel, "{shown}");
        assert_eq!(deliver.attributes["subscribers"], "1", "{shown}");
    }

    let carried = format!(r#","t":"00-{TRACE_ID}-{}-01"}}"#, engine.span_id);
    assert!(traced.ends_with(&carried), "{traced} carries {carried}");
    assert!(!quiet.contains(r#""t":"#), "unsampled: {quiet}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_or_carried() {
    let redis = RedisServer::start().await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();
    let publisher = node(&redis, "publisher", "publisher-1", None).await;
    let gateway = node(&redis, "gateway", "gateway-a", None).await;
    let channels = ["stock:QUIET", "quiet-plain"];
    let mut client = subscriber(&gateway, &channels).await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for channel in channels {
        let mut raw = Subscriber::start(&redis.addr(), &format!("herald.pub.{{{channel}}}"))
            .await
            .unwrap();
        publish(&publisher, channel, json!({"n": channel}), &traceparent).await;
        let push = client.next_push().await.unwrap();
        assert_eq!(push["pub"]["data"]["n"], channel, "{push}");
        let envelope = raw.next_message().await.unwrap();
        println!("{channel}: {envelope}");
        assert!(envelope.contains(r#""p":{"#), "{envelope}");
        assert!(!envelope.contains(r#""t":"#), "{envelope}");
        assert!(!envelope.contains(TRACE_ID), "{envelope}");
    }
    assert_eq!(otlp.requests(), 0);
}

#[tokio::test]
async fn spans_still_queued_are_exported_at_shutdown() {
    let redis = RedisServer::start().await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();
    let (url, endpoint) = (redis.url(), otlp.endpoint());
    let mut publisher = Herald::start(
        BIN,
        &[
            ("HERALD_SERVER__ROLE", "publisher"),
            ("HERALD_ENGINE__REDIS_URL", &url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            // Far beyond the test: only the shutdown flush can export.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await
    .unwrap();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    publish(&publisher, "stock:LAST", json!({"n": 1}), &traceparent).await;
    assert_eq!(otlp.requests(), 0, "nothing exported before the shutdown");
    publisher.terminate().unwrap();
    let status = publisher.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}");
    let spans = otlp
        .wait_for(Duration::from_secs(5), |spans| {
            !named(spans, "api.publish").is_empty() && !named(spans, "engine.publish").is_empty()
        })
        .await
        .unwrap();
    println!("exported at shutdown:\n{}", tree(&spans));
}
