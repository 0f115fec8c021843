//! Property tests of token verification (`auth::Verifier`), through its public
//! API: the committed corpus (`fuzz/corpus/token/`: tokens as Herald, the
//! centrifuge SDK's backends and careless issuers make them, malformed ones)
//! and mutations of it, then headers and claims of any JSON shape signed with
//! the test secret so that the claim checks are reached. Nothing panics,
//! refusal reasons stay short, and only what a correct key signed passes.

#[path = "support/token_claims.rs"]
mod token_claims;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::FutureExt;
use herald_core::auth::{now_secs, AuthError, Config, ConnectClaims, SubscribeClaims, Verifier};
use herald_testkit::fuzz;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};
use token_claims::{any_claims, any_header, claims, claims_json, hmac, text};

/// Verification without waiting: these verifiers hold keys only (no JWK Set to fetch).
fn verify_connect(v: &Verifier, token: &str) -> Result<ConnectClaims, AuthError> {
    v.verify_connect(token)
        .now_or_never()
        .expect("no key to fetch")
}

/// See [`verify_connect`].
fn verify_subscribe(v: &Verifier, token: &str) -> Result<SubscribeClaims, AuthError> {
    v.verify_subscribe(token)
        .now_or_never()
        .expect("no key to fetch")
}

/// The secret the corpus tokens are signed with.
const SECRET: &str = "herald-fuzz-secret";

/// Pieces of tokens that mutations insert.
const TOKENS: &[&[u8]] = &[
    b".", b"=", b"-", b"_", b"+", b"/", b" ", b"eyJ", b"e30", b"\n",
];

/// Longest refusal reason: reasons are logged, and a token is attacker text.
const REASON_MAX: usize = 200;

fn verifier(audience: Option<&str>, issuer: Option<&str>) -> Verifier {
    Verifier::new(&Config {
        hmac_secret: Some(SECRET.into()),
        audience: audience.map(Into::into),
        issuer: issuer.map(Into::into),
        ..Config::default()
    })
    .unwrap()
}

/// `header.claims.signature`, signed with `alg` and the test secret whatever the header says.
fn signed(header: &[u8], claims: &[u8], alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap();
    format!("{message}.{signature}")
}

/// `token` with its signature recomputed for the algorithm its header names.
fn canonical(token: &str) -> Option<String> {
    let (message, _) = token.rsplit_once('.')?;
    let (header, _) = message.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let alg: Algorithm = serde_json::from_value(header["alg"].clone()).ok()?;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).ok()?;
    Some(format!("{message}.{signature}"))
}

fn check_reason<T>(result: &Result<T, AuthError>) -> Result<(), TestCaseError> {
    if let Err(AuthError::InvalidToken { reason }) = result {
        prop_assert!(
            reason.len() <= REASON_MAX,
            "reason of {} bytes: {reason}",
            reason.len()
        );
    }
    Ok(())
}

#[test]
fn corpus_tokens_are_judged_as_named_and_edited_ones_pass_only_when_sound() {
    let corpus = fuzz::corpus("token");
    let v = verifier(None, None);
    for (name, bytes) in &corpus {
        let token = std::str::from_utf8(bytes).unwrap();
        let (connect, subscribe) = (verify_connect(&v, token), verify_subscribe(&v, token));
        let kind = name.split('-').next().unwrap();
        match (
            kind,
            name.contains("-connect-"),
            name.contains("-subscribe-"),
        ) {
            ("valid", true, _) => {
                assert!(connect.is_ok() && subscribe.is_err(), "{name}: {connect:?}")
            }
            ("valid", _, true) => assert!(
                connect.is_err() && subscribe.is_ok(),
                "{name}: {subscribe:?}"
            ),
            ("expired", ..) => {
                // Connection tokens: a subscription check finds no `channel` before the time.
                assert_eq!(
                    connect.as_ref().unwrap_err(),
                    &AuthError::TokenExpired,
                    "{name}"
                );
                assert!(subscribe.is_err(), "{name}");
            }
            ("invalid", ..) => {
                assert!(
                    matches!(connect, Err(AuthError::InvalidToken { .. })),
                    "{name}: {connect:?}"
                );
                assert!(
                    matches!(subscribe, Err(AuthError::InvalidToken { .. })),
                    "{name}: {subscribe:?}"
                );
            }
            // Real tokens with an expiry: judged by the date, only never panicking.
            _ => {}
        }
    }
    let strategy = fuzz::mutated(&corpus, TOKENS, 6);
    fuzz::run("token_mutations", 3000, strategy, |(_, bytes)| {
        let token = String::from_utf8_lossy(&bytes);
        let (connect, subscribe) = (verify_connect(&v, &token), verify_subscribe(&v, &token));
        check_reason(&connect)?;
        check_reason(&subscribe)?;
        // Edits may uncover a sound token (a prefix or padding removed), but
        // whatever passes carries exactly the signature of its first two
        // segments: no other spelling of a signature is accepted.
        if connect.is_ok() || subscribe.is_ok() {
            let canonical = canonical(&token);
            prop_assert_eq!(Some(&*token), canonical.as_deref());
        }
        Ok(())
    });
}

#[test]
fn signed_claims_come_back_or_are_refused_for_their_reason() {
    let header = (
        hmac(),
        select(vec![None, Some("JWT"), Some("jwt")]),
        prop::option::of(text()),
    );
    let v = verifier(None, None);
    fuzz::run(
        "token_claims",
        1000,
        (header, claims()),
        |((alg, typ, kid), c)| {
            let now = now_secs();
            let header = json!({"alg": alg, "typ": typ, "kid": kid});
            let token = signed(
                header.to_string().as_bytes(),
                claims_json(&c, now).to_string().as_bytes(),
                alg,
            );
            let expired = c.exp.is_some_and(|d| d < 0) || c.nbf.is_some_and(|d| d > 0);
            let (connect, subscribe) = (verify_connect(&v, &token), verify_subscribe(&v, &token));
            // Claims are read before their times are checked: a missing `channel` is found first.
            match (&c.channel, connect) {
                (_, Err(AuthError::TokenExpired)) if expired => {}
                (_, connect) if expired => prop_assert!(false, "expired, yet {:?}", connect),
                (Some(_), connect) => {
                    let refused = matches!(connect, Err(AuthError::InvalidToken { .. }));
                    prop_assert!(refused, "connection token with a channel claim");
                }
                (None, connect) => {
                    let got = connect.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&got.sub, c.sub.as_deref().unwrap_or(""));
                    prop_assert_eq!(got.exp, c.exp.map(|d| now + d));
                    prop_assert_eq!(&got.info, &c.info);
                    prop_assert_eq!(&got.channels, &c.channels);
                }
            }
            match (&c.channel, subscribe) {
                (None, subscribe) => {
                    let refused = matches!(subscribe, Err(AuthError::InvalidToken { .. }));
                    prop_assert!(refused, "subscription token without a channel claim");
                }
                (Some(_), subscribe) if expired => {
                    prop_assert_eq!(subscribe.unwrap_err(), AuthError::TokenExpired)
                }
                (Some(channel), subscribe) => {
                    let got = subscribe.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&got.channel, channel);
                    prop_assert_eq!(&got.sub, c.sub.as_deref().unwrap_or(""));
                    prop_assert_eq!(&got.client, &c.client);
                    prop_assert_eq!(&got.info, &c.info);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn any_signed_header_and_claims_never_panic_and_pass_only_when_sound() {
    let v = verifier(None, None);
    fuzz::run(
        "token_any_json",
        2000,
        (any_header(), any_claims(), hmac()),
        |(header, claims, alg)| {
            let token = signed(&header, &claims, alg);
            let (connect, subscribe) = (verify_connect(&v, &token), verify_subscribe(&v, &token));
            check_reason(&connect)?;
            check_reason(&subscribe)?;
            if connect.is_err() && subscribe.is_err() {
                return Ok(());
            }
            // Accepted: the header named the algorithm it was signed with, and the claims are sound.
            let header: Value = serde_json::from_slice(&header).unwrap();
            prop_assert_eq!(&header["alg"], &json!(alg));
            let claims: Value = serde_json::from_slice(&claims).unwrap();
            let now = now_secs();
            // `now` is read after verifying: a second may have passed.
            prop_assert!(
                claims["exp"].is_null() || claims["exp"].as_f64().unwrap() >= (now - 1) as f64
            );
            prop_assert!(claims["nbf"].is_null() || claims["nbf"].as_f64().unwrap() <= now as f64);
            if let Ok(c) = connect {
                prop_assert!(claims["channel"].is_null());
                prop_assert_eq!(c.sub.as_str(), claims["sub"].as_str().unwrap_or(""));
            }
            if let Ok(s) = subscribe {
                prop_assert_eq!(Some(s.channel.as_str()), claims["channel"].as_str());
            }
            Ok(())
        },
    );
}

#[test]
fn a_configured_audience_and_issuer_are_required() {
    let v = verifier(Some("herald-aud"), Some("herald-iss"));
    let aud = select(vec![
        None,
        Some(json!("herald-aud")),
        Some(json!(["other", "herald-aud"])),
        Some(json!("other")),
        Some(json!(["other"])),
        Some(json!([])),
        Some(json!(5)),
        Some(Value::Null),
    ]);
    let iss = select(vec![
        None,
        Some(json!("herald-iss")),
        Some(json!("other")),
        Some(json!(5)),
        Some(Value::Null),
    ]);
    fuzz::run(
        "token_audience",
        500,
        (aud, iss, hmac()),
        |(aud, iss, alg)| {
            let mut claims = json!({"sub": "42"});
            if let Some(aud) = &aud {
                claims["aud"] = aud.clone();
            }
            if let Some(iss) = &iss {
                claims["iss"] = iss.clone();
            }
            let token = signed(
                json!({ "alg": alg }).to_string().as_bytes(),
                claims.to_string().as_bytes(),
                alg,
            );
            let aud_ok = match &aud {
                Some(Value::String(a)) => a == "herald-aud",
                Some(Value::Array(a)) => a.contains(&json!("herald-aud")),
                _ => false,
            };
            let iss_ok = iss == Some(json!("herald-iss"));
            let connect = verify_connect(&v, &token);
            prop_assert_eq!(
                connect.is_ok(),
                aud_ok && iss_ok,
                "{}: {:?}",
                claims,
                connect
            );
            Ok(())
        },
    );
}
