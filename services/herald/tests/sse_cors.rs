//! CORS for SSE: a page on an origin listed in `auth.allowed_origins` may read
//! an `EventSource` from Herald's host (preflight answered, the stream carries
//! `Access-Control-Allow-Origin` with credentials); a foreign origin gets 403.

use herald_testkit::herald::Herald;
use reqwest::{Method, Response};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const ALLOWED: &str = "https://app.example";

async fn start() -> Herald {
    Herald::start(BIN, &[("HERALD_AUTH__ALLOWED_ORIGINS", ALLOWED)])
        .await
        .unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(h: &Herald, origin: &str) -> Response {
    reqwest::Client::new()
        .request(
            Method::OPTIONS,
            format!("http://{}/connection/sse", h.client_addr),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "last-event-id")
        .send()
        .await
        .unwrap()
}

async fn get(h: &Herald, origin: &str) -> Response {
    let url = format!(
        "http://{}/connection/sse?token={}",
        h.client_addr,
        h.token("cors")
    );
    reqwest::Client::new()
        .get(url)
        .header("Origin", origin)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_stream_with_cors_headers() {
    let h = start().await;
    let r = preflight(&h, ALLOWED).await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET"));
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("last-event-id")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(header(&r, "vary").is_some_and(|v| v.contains("Origin")));

    let r = get(&h, ALLOWED).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(header(&r, "vary").is_some_and(|v| v.contains("Origin")));
    assert_eq!(header(&r, "content-type"), Some("text/event-stream"));
}

#[tokio::test]
async fn a_foreign_origin_is_refused_without_cors_headers() {
    let h = start().await;
    for r in [
        preflight(&h, "https://evil.example").await,
        get(&h, "https://evil.example").await,
    ] {
        assert_eq!(r.status(), 403);
        assert_eq!(header(&r, "access-control-allow-origin"), None);
    }
}
