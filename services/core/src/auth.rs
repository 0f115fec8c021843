//! Token authentication: connection and subscription JWTs (HS256/384/512 with a
//! shared secret, RS256/ES256 with a PEM public key), claims as Centrifugo
//! defines them, and minting for `herald gentoken` and dev mode.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `[auth]` configuration section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HS256 secret; unset (with no public key) means dev mode.
    pub hmac_secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256/ES256 tokens.
    pub public_key: Option<String>,
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

/// Verifies tokens with the configured key.
#[derive(Clone)]
pub struct Verifier {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier; fails on an unreadable public key.
    pub fn new(config: &Config) -> Result<Verifier, AuthError> {
        let (key, algorithms) = if let Some(pem) = &config.public_key {
            let pem = pem.as_bytes();
            if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (
                    Some(k),
                    vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                )
            } else {
                let k = DecodingKey::from_ec_pem(pem).map_err(|e| AuthError::InvalidToken {
                    reason: format!("public_key: {e}"),
                })?;
                (Some(k), vec![Algorithm::ES256, Algorithm::ES384])
            }
        } else if let Some(secret) = &config.hmac_secret {
            (
                Some(DecodingKey::from_secret(secret.as_bytes())),
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            )
        } else {
            (None, vec![Algorithm::HS256])
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
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
        Ok(Verifier { key, validation })
    }

    /// Verifies a connection token.
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        let claims: ConnectClaims = self.decode(token)?;
        if claims.channel.is_some() {
            return Err(AuthError::InvalidToken {
                reason: "connection token carries a channel claim".into(),
            });
        }
        Ok(claims)
    }

    /// Verifies a subscription token.
    pub fn verify_subscribe(&self, token: &str) -> Result<SubscribeClaims, AuthError> {
        self.decode(token)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let key = self.key.as_ref().ok_or(AuthError::NoKey)?;
        jsonwebtoken::decode::<T>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::TokenExpired,
                _ => AuthError::InvalidToken {
                    reason: bounded(e.to_string()),
                },
            })
    }
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
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        Verifier::new(&Config {
            hmac_secret: Some("s3cret".into()),
            ..Config::default()
        })
        .unwrap()
    }

    #[test]
    fn accepts_valid_and_refuses_expired_or_forged_tokens() {
        let v = verifier();
        let t = mint_connect("s3cret", "42", Some(Duration::from_secs(60)), vec![]);
        assert_eq!(v.verify_connect(&t).unwrap().sub, "42");
        let no_exp = mint_connect("s3cret", "7", None, vec![]);
        assert_eq!(v.verify_connect(&no_exp).unwrap().exp, None);
        let expired = mint(
            "s3cret",
            &ConnectClaims {
                sub: "42".into(),
                exp: Some(now_secs() - 5),
                ..Default::default()
            },
        );
        assert_eq!(
            v.verify_connect(&expired).unwrap_err(),
            AuthError::TokenExpired
        );
        let forged = mint_connect("other", "42", None, vec![]);
        assert!(matches!(
            v.verify_connect(&forged),
            Err(AuthError::InvalidToken { .. })
        ));
    }

    #[test]
    fn refuses_alg_none_and_channel_claims() {
        let v = verifier();
        // {"alg":"none","typ":"JWT"}.{"sub":"42"}.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiJ9.";
        assert!(matches!(
            v.verify_connect(none),
            Err(AuthError::InvalidToken { .. })
        ));
        let sub_token = mint(
            "s3cret",
            &SubscribeClaims {
                sub: "42".into(),
                channel: "secret:1".into(),
                ..Default::default()
            },
        );
        assert!(v.verify_connect(&sub_token).is_err());
        assert_eq!(v.verify_subscribe(&sub_token).unwrap().channel, "secret:1");
    }
}
