//! Dev mode, when no verification key is configured: a generated secret and
//! API key, `*` origins, `/dev/token` and `/dev/api/publish` on the client port,
//! and a demo ticker on `stock:HRLD`. Loud in the log; refused with Redis or
//! split roles (see settings).

use std::net::SocketAddr;
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
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::settings::Settings;

/// The demo ticker's channel.
pub const TICKER: &str = "stock:HRLD";

/// Dev-mode state.
pub struct DevMode;

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

impl DevMode {
    /// Fills in a secret, an API key and `*` origins.
    pub fn prepare(settings: &mut Settings) -> DevMode {
        settings.auth.hmac_secret = Some(random(32));
        if settings.api.key.is_none() {
            settings.api.key = Some(random(24));
        }
        if settings.auth.allowed_origins.is_empty() {
            settings.auth.allowed_origins = vec!["*".into()];
        }
        DevMode
    }

    /// `/dev/token?user=ID` and `/dev/api/publish`.
    pub fn router(&self, settings: &Settings, publisher: Arc<Publisher>) -> Router {
        let secret = Arc::new(settings.auth.hmac_secret.clone().unwrap_or_default());
        Router::new()
            .route("/dev/token", get(token))
            .with_state(secret)
            .nest(
                "/dev",
                herald_publisher::publish_router(Arc::new(publisher.without_key())),
            )
    }

    /// Prints the banner.
    pub fn announce(&self, client: SocketAddr, settings: &Settings) {
        let host = if client.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            client.ip().to_string()
        };
        let base = format!("http://{host}:{}", client.port());
        let internal = settings.server.internal_addr;
        warn!("dev mode: generated secrets, any origin allowed; set HERALD_AUTH__HMAC_SECRET and HERALD_API__KEY in production");
        println!(
            "\nHerald is running in DEV MODE (no auth.hmac_secret configured)\n\
             \x20 demo page:  {base}/\n\
             \x20 token:      curl '{base}/dev/token?user=42'\n\
             \x20 api key:    {key}\n\
             \x20 publish:    curl -H 'X-API-Key: {key}' -d '{{\"channel\":\"user:42\",\"data\":{{\"text\":\"hi\"}}}}' http://127.0.0.1:{iport}/api/publish\n",
            key = settings.api.key.as_deref().unwrap_or_default(),
            iport = internal.port(),
        );
    }
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

/// Publishes a random walk to [`TICKER`] every second.
pub async fn run_ticker(engine: Arc<Engine>, namespaces: Namespaces, shutdown: CancellationToken) {
    let Ok(channel) = Channel::parse(TICKER, &namespaces) else {
        return;
    };
    let mut price = 100.0_f64;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
