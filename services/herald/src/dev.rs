//! Dev mode, when no verification key is configured: generated secret and API
//! key, `*` origins, and a loud banner. The node serves the dev routes and the
//! demo ticker (`herald_node::dev`); dev mode is refused with Redis or split
//! roles (see settings).

use std::net::SocketAddr;

use rand::distr::{Alphanumeric, SampleString};
use tracing::warn;

use crate::settings::Settings;

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

/// Fills in a secret, an API key and `*` origins.
pub fn prepare(settings: &mut Settings) {
    settings.auth.hmac_secret = Some(random(32));
    if settings.api.key.is_none() {
        settings.api.key = Some(random(24));
    }
    if settings.auth.allowed_origins.is_empty() {
        settings.auth.allowed_origins = vec!["*".into()];
    }
}

/// Prints the banner.
pub fn announce(client: SocketAddr, internal: SocketAddr, settings: &Settings) {
    let host = if client.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        client.ip().to_string()
    };
    let scheme = |tls: &herald_core::tls::Config| match tls.cert_file {
        Some(_) => "https",
        None => "http",
    };
    let base = format!(
        "{}://{host}:{}",
        scheme(&settings.server.client_tls),
        client.port()
    );
    warn!("dev mode: generated secrets, any origin allowed; set HERALD_AUTH__HMAC_SECRET and HERALD_API__KEY in production");
    println!(
        "\nHerald is running in DEV MODE (no auth.hmac_secret configured)\n\
         \x20 demo page:  {base}/\n\
         \x20 token:      curl '{base}/dev/token?user=42'\n\
         \x20 api key:    {key}\n\
         \x20 publish:    curl -H 'X-API-Key: {key}' -d '{{\"channel\":\"user:42\",\"data\":{{\"text\":\"hi\"}}}}' {internal_scheme}://127.0.0.1:{iport}/api/publish\n",
        key = settings.api.key.as_deref().unwrap_or_default(),
        internal_scheme = scheme(&settings.server.internal_tls),
        iport = internal.port(),
    );
}
