//! A fresh registry exports every family with every known series at zero.

use super::labels::{Transport, API_METHODS, CLIENT_METHODS};
use super::*;
use crate::protocol::Disconnect;

/// The value of the sample line `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_fresh_registry_has_every_family_and_series_at_zero() {
    let text = Metrics::new().render();
    let families = [
        ("connections", "gauge"),
        ("connects_total", "counter"),
        ("disconnects_total", "counter"),
        ("connection_duration_seconds", "histogram"),
        ("slow_client_cutoffs_total", "counter"),
        ("connection_queue_high_water_frames", "histogram"),
        ("subscriptions", "gauge"),
        ("channels", "gauge"),
        ("publications_total", "counter"),
        ("deliveries_total", "counter"),
        ("frames_written_total", "counter"),
        ("bytes_written_total", "counter"),
        ("writes_total", "counter"),
        ("pushes_per_write", "histogram"),
        ("publish_to_write_seconds", "histogram"),
        ("api_requests_total", "counter"),
        ("api_request_duration_seconds", "histogram"),
        ("client_commands_total", "counter"),
        ("client_command_duration_seconds", "histogram"),
        ("recoveries_total", "counter"),
        ("publish_duration_seconds", "histogram"),
        ("engine_errors_total", "counter"),
        ("engine_up", "gauge"),
        ("nodes", "gauge"),
        ("build_info", "gauge"),
    ];
    for (name, kind) in families {
        let line = format!("# TYPE herald_{name} {kind}");
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    assert!(
        !text.contains("delivery_lag"),
        "replaced by publish_to_write"
    );
    let zero = |series: String| {
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    };
    for t in Transport::ALL.map(Transport::label) {
        for d in Disconnect::ALL {
            zero(format!(
                r#"herald_disconnects_total{{code="{}",transport="{t}"}}"#,
                d.code
            ));
        }
        zero(format!(
            r#"herald_disconnects_total{{code="other",transport="{t}"}}"#
        ));
        for family in [
            "connections",
            "connects_total",
            "slow_client_cutoffs_total",
            "deliveries_total",
            "frames_written_total",
            "bytes_written_total",
            "writes_total",
            "connection_duration_seconds_count",
            "connection_queue_high_water_frames_count",
            "pushes_per_write_count",
            "publish_to_write_seconds_count",
        ] {
            zero(format!(r#"herald_{family}{{transport="{t}"}}"#));
        }
    }
    for ns in ["default", "user", "stock"] {
        zero(format!(
            r#"herald_subscriptions{{channel_namespace="{ns}"}}"#
        ));
        zero(format!(r#"herald_channels{{channel_namespace="{ns}"}}"#));
        for source in ["api", "client"] {
            zero(format!(
                r#"herald_publications_total{{channel_namespace="{ns}",source="{source}"}}"#
            ));
        }
    }
    for m in API_METHODS {
        zero(format!(
            r#"herald_api_requests_total{{method="{m}",result="ok"}}"#
        ));
        zero(format!(
            r#"herald_api_request_duration_seconds_count{{method="{m}"}}"#
        ));
    }
    for m in CLIENT_METHODS {
        zero(format!(
            r#"herald_client_commands_total{{method="{m}",result="ok"}}"#
        ));
        zero(format!(
            r#"herald_client_command_duration_seconds_count{{method="{m}"}}"#
        ));
    }
    for outcome in ["recovered", "not_recovered"] {
        for from in ["memory", "redis"] {
            zero(format!(
                r#"herald_recoveries_total{{from="{from}",outcome="{outcome}"}}"#
            ));
        }
    }
    for name in [
        "engine_errors_total",
        "engine_up",
        "nodes",
        "publish_duration_seconds_count",
    ] {
        zero(format!("herald_{name}"));
    }
    let build = format!(
        r#"herald_build_info{{commit="{COMMIT}",version="{}"}}"#,
        crate::VERSION
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{build}");
}

#[test]
fn handles_count_into_their_series() {
    let m = Metrics::new();
    m.published(Source::Api, "stock:A");
    m.published(Source::Client, "bare");
    m.transport(Transport::Sse).cut_off();
    m.transport(Transport::Sse).closed(3008, 2.0, 5);
    m.transport(Transport::WebSocket).closed(4242, 1.0, 0);
    m.api_request("publish", "107", 0.001);
    m.api_request("nonsense", "104", 0.001);
    m.client_command("subscribe", "ok", 0.001);
    m.recovery(false, RecoveryFrom::Redis);
    m.namespace("user:42").subscriptions.inc();
    let text = m.render();
    for series in [
        r#"herald_publications_total{channel_namespace="stock",source="api"}"#,
        r#"herald_publications_total{channel_namespace="default",source="client"}"#,
        r#"herald_disconnects_total{code="3008",transport="sse"}"#,
        r#"herald_slow_client_cutoffs_total{transport="sse"}"#,
        r#"herald_connection_queue_high_water_frames_bucket{transport="sse",le="8"}"#,
        r#"herald_disconnects_total{code="other",transport="websocket"}"#,
        r#"herald_api_requests_total{method="publish",result="107"}"#,
        r#"herald_api_requests_total{method="unknown",result="104"}"#,
        r#"herald_client_commands_total{method="subscribe",result="ok"}"#,
        r#"herald_recoveries_total{from="redis",outcome="not_recovered"}"#,
        r#"herald_subscriptions{channel_namespace="user"}"#,
    ] {
        assert_eq!(sample(&text, series), Some(1.0), "{series}");
    }
    assert_eq!(
        sample(
            &text,
            r#"herald_slow_client_cutoffs_total{transport="websocket"}"#
        ),
        Some(0.0)
    );
}
