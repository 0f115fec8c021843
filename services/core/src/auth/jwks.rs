//! The JWK Set of `auth.jwks_url`: fetched over HTTP(S) (size cap, timeout),
//! cached for its `Cache-Control: max-age` (clamped) and refreshed early on an
//! unknown `kid`, one fetch at a time and at most once per [`MISS_INTERVAL`].
//! It verifies no token itself (see [`super::Verifier`]).

mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::Validation;
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{AuthError, Keyed};

/// Largest JWK Set body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long one fetch (connect, headers and body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache lifetime when the response carries no `max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest cache lifetime, whatever `max-age` says.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Shortest cache lifetime unless `auth.jwks_min_ttl` says otherwise.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(60);
/// Unknown `kid`s trigger at most one fetch per interval, so a flood of
/// forged kids cannot turn Herald into a request amplifier.
pub const MISS_INTERVAL: Duration = Duration::from_secs(10);

/// Keys by `kid`.
type Keys = HashMap<String, Arc<Keyed>>;

/// Why a fetch brought no key set (the previous keys stay in use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, TLS, timeout or a broken body.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A status other than 2xx.
    #[error("status {0}")]
    Status(u16),
    /// The body exceeded [`MAX_BODY`].
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is no JWK Set.
    #[error("not a JWK set: {0}")]
    Json(#[from] serde_json::Error),
}

/// Where the set comes from.
enum Source {
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
        /// The URL for logs: no password, no query.
        shown: String,
    },
    #[cfg(test)]
    Fake(Arc<tests::Fake>),
}

/// What the single fetcher knows; guarded by the fetch lock.
#[derive(Default)]
struct FetchState {
    /// When the cached set goes stale (`None`: never fetched).
    due: Option<Instant>,
    /// The last fetch an unknown `kid` asked for.
    last_miss: Option<Instant>,
    /// Whether the last fetch failed (a failure streak is logged once).
    failing: bool,
}

/// A cached, self-refreshing JWK Set.
pub struct Jwks {
    source: Source,
    /// Claim rules every key of the set verifies with.
    base: Validation,
    min_ttl: Duration,
    /// Read on every token; replaced whole after a fetch.
    keys: RwLock<Arc<Keys>>,
    /// Single flight: whoever holds it fetches, the others wait and reuse
    /// the result. A `tokio` mutex because the holder awaits the response.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Fetches finished so far: a miss that sees it move while it waits for
    /// the lock skips its own fetch.
    fetched: AtomicU64,
    refreshes: IntCounterVec,
    ok: IntCounter,
    failed: IntCounter,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url()).finish()
    }
}

impl Jwks {
    /// A set fetched from `url` (http or https), not fetched yet.
    pub(crate) fn new(
        url: &str,
        min_ttl: Option<Duration>,
        base: Validation,
    ) -> Result<Jwks, AuthError> {
        let bad = |key, reason: String| AuthError::BadConfig { key, reason };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad("auth.jwks_url", e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(bad(
                "auth.jwks_url",
                "must be an http:// or https:// URL".into(),
            ));
        }
        let min_ttl = min_ttl.unwrap_or(DEFAULT_MIN_TTL);
        if min_ttl < Duration::from_secs(1) || min_ttl > MAX_TTL {
            return Err(bad("auth.jwks_min_ttl", "must be within 1s and 24h".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad("auth.jwks_url", e.to_string()))?;
        let mut shown = parsed.clone();
        let _ = shown.set_password(None);
        shown.set_query(None);
        let source = Source::Http {
            client,
            url: parsed,
            shown: shown.into(),
        };
        Ok(Jwks::with_source(source, min_ttl, base))
    }

    fn with_source(source: Source, min_ttl: Duration, base: Validation) -> Jwks {
        let refreshes = IntCounterVec::new(
            Opts::new("jwks_refreshes_total", "JWK Set fetches, by result"),
            &["result"],
        )
        .expect("valid metric");
        Jwks {
            source,
            base,
            min_ttl,
            keys: RwLock::default(),
            fetch: tokio::sync::Mutex::default(),
            fetched: AtomicU64::new(0),
            ok: refreshes.with_label_values(&["ok"]),
            failed: refreshes.with_label_values(&["error"]),
            refreshes,
        }
    }

    fn url(&self) -> &str {
        match &self.source {
            Source::Http { shown, .. } => shown,
            #[cfg(test)]
            Source::Fake(_) => "fake",
        }
    }

    /// Registers `herald_jwks_refreshes_total{result}` (both series at 0).
    pub(crate) fn register(&self, registry: &prometheus::Registry) {
        if let Err(e) = registry.register(Box::new(self.refreshes.clone())) {
            debug!(error = %e, "jwks refresh counter not registered");
        }
    }

    /// The cached key named `kid`.
    pub(crate) fn cached(&self, kid: &str) -> Option<Arc<Keyed>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(kid).cloned()
    }

    /// The key named `kid` after fetching the set again, unless another
    /// caller fetched meanwhile or an unknown `kid` did so less than
    /// [`MISS_INTERVAL`] ago.
    pub(crate) async fn key_after_refresh(&self, kid: &str) -> Option<Arc<Keyed>> {
        let seen = self.fetched.load(Ordering::Acquire);
        let mut state = self.fetch.lock().await;
        if let Some(keyed) = self.cached(kid) {
            return Some(keyed);
        }
        if self.fetched.load(Ordering::Acquire) == seen {
            let now = Instant::now();
            if state.last_miss.is_none_or(|t| now >= t + MISS_INTERVAL) {
                state.last_miss = Some(now);
                self.refresh(&mut state).await;
            }
        }
        drop(state);
        self.cached(kid)
    }

    /// Fetches the set whenever it goes stale, until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        cancel
            .run_until_cancelled(async {
                loop {
                    self.tick().await;
                }
            })
            .await;
    }

    /// Waits until the set is stale, then fetches it (unless a fetch for an
    /// unknown `kid` renewed it meanwhile).
    async fn tick(&self) {
        let due = self.fetch.lock().await.due;
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let mut state = self.fetch.lock().await;
        if state.due.is_none_or(|due| due <= Instant::now()) {
            self.refresh(&mut state).await;
        }
    }

    /// One fetch; the caller holds the fetch lock.
    async fn refresh(&self, state: &mut FetchState) {
        let fetched = self.source.fetch().await.and_then(|(body, max_age)| {
            let keys = parse::key_set(&body, &self.base)?;
            Ok((keys, max_age))
        });
        match fetched {
            Ok((keys, max_age)) => {
                let ttl = parse::ttl(max_age, self.min_ttl);
                self.ok.inc();
                if state.failing {
                    info!(keys = keys.len(), "jwks fetched again");
                } else {
                    debug!(keys = keys.len(), ttl = ?ttl, "jwks fetched");
                }
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                state.failing = false;
                state.due = Some(Instant::now() + ttl);
            }
            Err(e) => {
                self.failed.inc();
                if !state.failing {
                    warn!(url = self.url(), error = %e, "jwks fetch failed, keeping the previous keys");
                }
                state.failing = true;
                state.due = Some(Instant::now() + self.min_ttl);
            }
        }
        self.fetched.fetch_add(1, Ordering::AcqRel);
    }
}

impl Source {
    /// The body and the `max-age` of one response.
    async fn fetch(&self) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        match self {
            Source::Http { client, url, .. } => {
                let accept = "application/jwk-set+json, application/json";
                let mut response = client
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, accept)
                    .send()
                    .await
                    .map_err(reqwest::Error::without_url)?;
                if !response.status().is_success() {
                    return Err(FetchError::Status(response.status().as_u16()));
                }
                if response.content_length().unwrap_or(0) > MAX_BODY as u64 {
                    return Err(FetchError::TooLarge);
                }
                let max_age = response
                    .headers()
                    .get(reqwest::header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse::max_age);
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url())? {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(FetchError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok((body, max_age))
            }
            #[cfg(test)]
            Source::Fake(fake) => fake.fetch().await,
        }
    }
}
