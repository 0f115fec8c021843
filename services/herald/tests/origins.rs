//! Browser origins: an `Origin` must be listed in `auth.allowed_origins`, unless
//! the page comes from the gateway itself (same origin, as the demo page does);
//! clients without `Origin` are not browsers and are accepted. WebSocket and SSE
//! follow the same rule.

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn foreign_origins_are_refused() {
    let h = Herald::start(
        BIN,
        &[(
            "HERALD_AUTH__ALLOWED_ORIGINS",
            "https://app.example, https://b.example",
        )],
    )
    .await
    .unwrap();
    let err = Client::open_with_origin(&h.ws_url(), Some("https://evil.example"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(
        Client::open_with_origin(&h.ws_url(), Some("https://b.example"))
            .await
            .is_ok()
    );
    assert!(
        Client::open(&h.ws_url()).await.is_ok(),
        "no Origin: not a browser"
    );
}

#[tokio::test]
async fn pages_of_the_gateway_itself_are_same_origin() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let own = format!("http://{}", h.client_addr);
    assert!(
        Client::open_with_origin(&h.ws_url(), Some(&own))
            .await
            .is_ok(),
        "the demo page's own origin"
    );
    for foreign in ["https://evil.example", "http://127.0.0.1:1"] {
        let err = Client::open_with_origin(&h.ws_url(), Some(foreign))
            .await
            .err()
            .unwrap_or_else(|| panic!("{foreign} was accepted"));
        assert!(err.to_string().contains("403"), "{err}");
    }
    let sse = |origin: &str| {
        let url = format!(
            "http://{}/connection/sse?token={}",
            h.client_addr,
            h.token("u1")
        );
        let origin = origin.to_owned();
        async move {
            reqwest::Client::new()
                .get(url)
                .header("Origin", origin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(sse("https://evil.example").await, 403);
    assert_eq!(sse(&own).await, 200);
}
