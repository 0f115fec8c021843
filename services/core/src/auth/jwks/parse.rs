//! Reading a fetched JWK Set into verification keys, and `Cache-Control`
//! into a cache lifetime. The algorithms a key verifies come from its `kty`,
//! `crv` and `alg`, never from a token. No IO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::debug;

use super::{Keys, DEFAULT_TTL, MAX_TTL};
use crate::auth::{validation, Keyed};

const RSA: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// The usable keys of a JWK Set body. Keys without a `kid`, of another use,
/// of an unsupported type or symmetric (`oct`) are skipped, as are keys whose
/// `alg` contradicts their type; the first of two keys with one `kid` wins.
pub(super) fn key_set(body: &[u8], base: &Validation) -> Result<Keys, serde_json::Error> {
    #[derive(Deserialize)]
    struct Set<'a> {
        #[serde(borrow)]
        keys: Vec<&'a RawValue>,
    }
    let set: Set<'_> = serde_json::from_slice(body)?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        let jwk: Jwk = match serde_json::from_str(raw.get()) {
            Ok(jwk) => jwk,
            Err(e) => {
                debug!(error = %e, "jwks: unreadable key skipped");
                continue;
            }
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let Some(algorithms) = algorithms(&jwk) else {
            debug!(kid, "jwks: key skipped (not a supported signature key)");
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            debug!(kid, "jwks: key skipped (bad parameters)");
            continue;
        };
        keys.entry(kid).or_insert_with(|| {
            Arc::new(Keyed {
                key,
                validation: validation(base, algorithms),
            })
        });
    }
    Ok(keys)
}

/// The algorithms `jwk` may verify: its type's (RSA: RS256/384/512, EC
/// P-256: ES256, P-384: ES384, OKP Ed25519: EdDSA), narrowed to its `alg`.
pub(super) fn algorithms(jwk: &Jwk) -> Option<&'static [Algorithm]> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    let family: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // A shared secret published in a key set is no secret: never HS*.
        _ => return None,
    };
    let Some(alg) = jwk.common.key_algorithm else {
        return Some(family);
    };
    let alg = match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    let at = family.iter().position(|a| *a == alg)?;
    Some(&family[at..=at])
}

/// The `max-age` of a `Cache-Control` value; `no-cache` and `no-store` are 0.
pub(super) fn max_age(cache_control: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, value)) = directive.split_once('=') {
            if name.trim().eq_ignore_ascii_case("max-age") {
                let seconds = value.trim().trim_matches('"').parse::<u64>().ok();
                max_age = seconds.map(Duration::from_secs);
            }
        }
    }
    max_age
}

/// How long a fetched set is used: its `max-age` ([`DEFAULT_TTL`] without
/// one) within `min` and [`MAX_TTL`].
pub(super) fn ttl(max_age: Option<Duration>, min: Duration) -> Duration {
    max_age.unwrap_or(DEFAULT_TTL).clamp(min, MAX_TTL)
}
