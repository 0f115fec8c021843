//! Dev mode's parts of a running node: `/dev/token?user=ID` and
//! `/dev/api/publish` on the client port, and a demo ticker on `stock:HRLD`.
//! Generating the secrets and announcing them is the binary's business.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use herald_core::channel::Channel;
use herald_core::engine::PublishOptions;
use herald_core::namespace::Namespaces;
use herald_core::Engine;
use herald_publisher::Publisher;
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The demo ticker's channel.
pub const TICKER: &str = "stock:HRLD";

/// `/dev/token?user=ID` (tokens signed with `secret`) and `/dev/api/publish`.
pub fn router(secret: &str, publisher: &Publisher) -> Router {
    Router::new()
        .route("/dev/token", get(token))
        .with_state(Arc::new(secret.to_owned()))
        .nest(
            "/dev",
            herald_publisher::publish_router(Arc::new(publisher.without_key())),
        )
}

#[derive(Deserialize)]
struct TokenQuery {
    user: Option<String>,
}

async fn token(
    State(secret): State<Arc<String>>,
    Query(q): Query<TokenQuery>,
) -> Json<serde_json::Value> {
    let user = q
        .user
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| format!("guest-{}", rand::rng().random_range(1000..10000)));
    let token = herald_core::auth::mint_connect(
        &secret,
        &user,
        Some(Duration::from_secs(24 * 3600)),
        vec![],
    );
    Json(serde_json::json!({ "token": token, "user": user }))
}

/// Publishes a random walk to [`TICKER`] every second until `cancel`.
pub async fn run_ticker(engine: Arc<Engine>, namespaces: Namespaces, cancel: CancellationToken) {
    let Ok(channel) = Channel::parse(TICKER, &namespaces) else {
        return;
    };
    let mut price = 100.0_f64;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        price = (price * (1.0 + rand::rng().random_range(-0.01..0.01))).max(1.0);
        let data = format!("{{\"symbol\":\"HRLD\",\"price\":{:.2}}}", price);
        let raw = serde_json::value::RawValue::from_string(data).expect("valid JSON");
        if let Err(e) = engine
            .publish(&channel, raw, PublishOptions::default())
            .await
        {
            warn!(error = %e, "ticker publish failed");
        }
    }
}
