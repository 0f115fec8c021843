//! Token authentication: connection and subscription JWTs (HS256/384/512 with a
//! shared secret, RS256/ES256 with a PEM public key, RS/ES/EdDSA with the keys
//! of a JWK Set, see [`jwks`]), claims as Centrifugo defines them, and minting
//! for `herald gentoken` and dev mode.

mod header;
pub mod jwks;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use header::{Kid, Peek, STACK_HEADER};

/// The `[auth]` configuration section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HS256 secret; unset (with no public key) means dev mode.
    pub hmac_secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256/ES256 tokens.
    pub public_key: Option<String>,
    /// JWK Set URL (http or https): RS/ES/EdDSA tokens are verified with the
    /// key their `kid` names. Coexists with `hmac_secret`, not with `public_key`.
    pub jwks_url: Option<String>,
    /// Shortest time the JWK Set is cached, whatever its `Cache-Control` says
    /// (default 60 s); a failed fetch is retried after this long.
    #[serde(default, deserialize_with = "crate::config::opt_duration")]
    pub jwks_min_ttl: Option<Duration>,
    /// Browser origins allowed to open connections; `*` allows all (dev only).
    #[serde(default, deserialize_with = "crate::config::string_list")]
    pub allowed_origins: Vec<String>,
    /// Connections without a token are accepted as anonymous (user "").
    #[serde(default)]
    pub anonymous: bool,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `exp` is in the past or `nbf` in the future: the client should get a new token.
    #[error("token expired")]
    TokenExpired,
    /// Bad signature, wrong algorithm, malformed, or forbidden claims.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// What was wrong (never the token itself).
        reason: String,
    },
    /// Neither a secret nor a public key is configured.
    #[error("no verification key configured")]
    NoKey,
    /// The `[auth]` section cannot work as written.
    #[error("{key}: {reason}")]
    BadConfig {
        /// The setting at fault, `auth.public_key` say.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuthError {
    fn invalid(reason: impl Into<String>) -> AuthError {
        AuthError::InvalidToken {
            reason: bounded(reason.into()),
        }
    }
}

/// Claims of a connection token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectClaims {
    /// User id; empty is anonymous.
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Shown to others in presence, join/leave and client publications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// Extra server-side subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Centrifugo's `subs` claim: more server-side subscriptions, by channel
    /// (their per-channel options are not applied; the channel's namespace decides).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub subs: std::collections::BTreeMap<String, serde_json::Value>,
    /// Must be absent: a subscription token is not a connection token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Claims of a subscription token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscribeClaims {
    /// Must equal the connection's user.
    #[serde(default)]
    pub sub: String,
    /// The channel it grants.
    pub channel: String,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Channel-scoped info shown in presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// Binds the token to one connection id, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// A verification key and the rules it verifies with: the algorithms come
/// from the key (its configuration or its JWK), never from a token's header.
#[derive(Clone)]
pub(crate) struct Keyed {
    pub(crate) key: DecodingKey,
    pub(crate) validation: Validation,
}

impl Keyed {
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        jsonwebtoken::decode::<T>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::TokenExpired,
                _ => AuthError::invalid(e.to_string()),
            })
    }
}

/// The claim rules of every key (`aud`, `iss`, `exp`, `nbf`), for `algorithms`.
pub(crate) fn validation(base: &Validation, algorithms: &[Algorithm]) -> Validation {
    let mut validation = base.clone();
    validation.algorithms = algorithms.to_vec();
    validation
}

fn base_validation(config: &Config) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.required_spec_claims = HashSet::new();
    // A configured audience or issuer is required: jsonwebtoken checks
    // `aud` and `iss` only when they are present and well-formed.
    match &config.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".into());
        }
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        validation.set_issuer(&[iss]);
        validation.required_spec_claims.insert("iss".into());
    }
    validation
}

/// Verifies tokens. The header's algorithm family picks the key: HS* the
/// shared secret, RS/ES/EdDSA the JWK Set entry named by `kid` (or the PEM
/// public key); the key then accepts only its own algorithms.
#[derive(Clone)]
pub struct Verifier {
    hmac: Option<Arc<Keyed>>,
    pem: Option<Arc<Keyed>>,
    jwks: Option<Arc<jwks::Jwks>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hmac", &self.hmac.is_some())
            .field("public_key", &self.pem.is_some())
            .field("jwks", &self.jwks)
            .finish()
    }
}

/// Which key verifies a token.
enum Route<'a> {
    Key(Arc<Keyed>),
    /// A `kid` the cached JWK Set lacks.
    Refresh(&'a jwks::Jwks, String),
}

impl Verifier {
    /// Builds a verifier; fails on an unreadable public key or JWKS URL, or
    /// on `jwks_url` together with `public_key`.
    pub fn new(config: &Config) -> Result<Verifier, AuthError> {
        if config.jwks_url.is_some() && config.public_key.is_some() {
            return Err(AuthError::BadConfig {
                key: "auth.jwks_url",
                reason: "set either auth.jwks_url or auth.public_key, not both".into(),
            });
        }
        let base = base_validation(config);
        let pem = match &config.public_key {
            Some(pem) => Some(Arc::new(pem_key(pem.as_bytes(), &base)?)),
            None => None,
        };
        // A PEM public key replaces the shared secret (as it always has); a
        // JWK Set does not: HS tokens keep being verified with the secret.
        let hmac = match (&config.hmac_secret, &pem) {
            (Some(secret), None) => Some(Arc::new(Keyed {
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation: validation(
                    &base,
                    &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                ),
            })),
            _ => None,
        };
        let jwks = match &config.jwks_url {
            Some(url) => Some(Arc::new(jwks::Jwks::new(url, config.jwks_min_ttl, base)?)),
            None => None,
        };
        Ok(Verifier { hmac, pem, jwks })
    }

    /// Keeps the JWK Set (if configured) fresh on `tasks` until `cancel`, and
    /// registers its refresh counter in `registry`.
    pub fn spawn_refresh(
        &self,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        registry: &prometheus::Registry,
    ) {
        if let Some(jwks) = &self.jwks {
            jwks.register(registry);
            tasks.spawn(jwks.clone().run(cancel.clone()));
        }
    }

    /// Verifies a connection token.
    pub async fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        let claims: ConnectClaims = self.decode(token).await?;
        if claims.channel.is_some() {
            return Err(AuthError::invalid(
                "connection token carries a channel claim",
            ));
        }
        Ok(claims)
    }

    /// Verifies a subscription token.
    pub async fn verify_subscribe(&self, token: &str) -> Result<SubscribeClaims, AuthError> {
        self.decode(token).await
    }

    async fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let keyed = match self.route(token)? {
            Route::Key(keyed) => keyed,
            Route::Refresh(jwks, kid) => jwks
                .key_after_refresh(&kid)
                .await
                .ok_or_else(|| AuthError::invalid("unknown kid"))?,
        };
        keyed.decode(token)
    }

    fn route(&self, token: &str) -> Result<Route<'_>, AuthError> {
        if self.hmac.is_none() && self.pem.is_none() && self.jwks.is_none() {
            return Err(AuthError::NoKey);
        }
        let encoded = token.split_once('.').map_or(token, |(header, _)| header);
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bad_header = |e: &dyn std::fmt::Display| AuthError::invalid(format!("header: {e}"));
        let mut stack = [0u8; STACK_HEADER];
        let heap: Vec<u8>;
        let json = if encoded.len() / 4 * 3 + 3 <= STACK_HEADER {
            let n = b64
                .decode_slice(encoded, &mut stack)
                .map_err(|e| bad_header(&e))?;
            &stack[..n]
        } else {
            heap = b64.decode(encoded).map_err(|e| bad_header(&e))?;
            &heap[..]
        };
        let header: Peek<'_> = serde_json::from_slice(json).map_err(|e| bad_header(&e))?;
        let not_accepted = || AuthError::invalid(format!("{:?} tokens not accepted", header.alg));
        match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                self.hmac.clone().map(Route::Key).ok_or_else(not_accepted)
            }
            _ => match (&self.jwks, &header.kid) {
                (Some(jwks), Some(Kid(kid))) => Ok(match jwks.cached(kid) {
                    Some(keyed) => Route::Key(keyed),
                    None => Route::Refresh(jwks, kid.to_string()),
                }),
                (Some(_), None) => Err(AuthError::invalid("token has no kid")),
                (None, _) => self.pem.clone().map(Route::Key).ok_or_else(not_accepted),
            },
        }
    }
}

fn pem_key(pem: &[u8], base: &Validation) -> Result<Keyed, AuthError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let rs = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
        return Ok(Keyed {
            key,
            validation: validation(base, &rs),
        });
    }
    let key = DecodingKey::from_ec_pem(pem).map_err(|e| AuthError::BadConfig {
        key: "auth.public_key",
        reason: e.to_string(),
    })?;
    Ok(Keyed {
        key,
        validation: validation(base, &[Algorithm::ES256, Algorithm::ES384]),
    })
}

/// Longest refusal reason kept, in bytes: jsonwebtoken quotes the header's
/// and the claims' text in its errors, and reasons are logged.
const REASON_MAX: usize = 120;

/// `reason` cut to [`REASON_MAX`] bytes (at a character boundary).
fn bounded(mut reason: String) -> String {
    if reason.len() > REASON_MAX {
        let mut end = REASON_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    crate::now_ms() / 1000
}

/// Signs claims with an HS256 secret.
pub fn mint<T: Serialize>(secret: &str, claims: &T) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// A connection token for `user`, valid for `ttl` (none: never expires).
pub fn mint_connect(
    secret: &str,
    user: &str,
    ttl: Option<Duration>,
    channels: Vec<String>,
) -> String {
    mint(
        secret,
        &ConnectClaims {
            sub: user.to_owned(),
            exp: ttl.map(|t| now_secs() + t.as_secs() as i64),
            channels,
            ..ConnectClaims::default()
        },
    )
}

#[cfg(test)]
mod tests;
