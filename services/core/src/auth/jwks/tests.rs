//! Unit tests of the JWK Set cache on a paused clock with an in-process
//! source: single flight, the unknown-`kid` rate limit, `max-age` scheduling,
//! failures keeping the old keys; and which keys verify which algorithms.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::auth::{ConnectClaims, Verifier};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../herald/tests/fixtures/jwks/", $name))
    };
}

/// An in-process JWK Set endpoint.
pub(super) struct Fake {
    calls: AtomicUsize,
    /// Body and `Cache-Control`, or a failure.
    response: Mutex<Option<(String, Option<&'static str>)>>,
    delay: Duration,
}

impl Fake {
    fn new(body: &str, cache_control: Option<&'static str>, delay: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicUsize::new(0),
            response: Mutex::new(Some((body.to_owned(), cache_control))),
            delay,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn serve(&self, response: Option<(&str, Option<&'static str>)>) {
        *self.response.lock().unwrap() = response.map(|(b, c)| (b.to_owned(), c));
    }

    pub(super) async fn fetch(&self) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        match &*self.response.lock().unwrap() {
            Some((body, cc)) => Ok((body.as_bytes().to_vec(), cc.and_then(parse::max_age))),
            None => Err(FetchError::Status(503)),
        }
    }
}

fn set(jwks: &[&str]) -> String {
    let keys: Vec<serde_json::Value> = jwks
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

fn jwks(fake: &Arc<Fake>) -> Arc<Jwks> {
    let base = crate::auth::base_validation(&crate::auth::Config::default());
    Arc::new(Jwks::with_source(
        Source::Fake(fake.clone()),
        DEFAULT_MIN_TTL,
        base,
    ))
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_fetch() {
    let fake = Fake::new(
        &set(&[fixture!("ed-1.jwk.json")]),
        None,
        Duration::from_millis(200),
    );
    let jwks = jwks(&fake);
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let jwks = jwks.clone();
            tokio::spawn(async move { jwks.key_after_refresh("ed-1").await.is_some() })
        })
        .collect();
    for waiter in waiters {
        assert!(waiter.await.unwrap());
    }
    assert_eq!(fake.calls(), 1);
    assert!(jwks.cached("ed-1").is_some());
}

#[tokio::test(start_paused = true)]
async fn unknown_kids_fetch_at_most_once_per_interval() {
    let fake = Fake::new(&set(&[fixture!("ed-1.jwk.json")]), None, Duration::ZERO);
    let jwks = jwks(&fake);
    assert!(jwks.key_after_refresh("forged-1").await.is_none());
    assert_eq!(fake.calls(), 1);
    for i in 0..50 {
        assert!(jwks
            .key_after_refresh(&format!("forged-{i}"))
            .await
            .is_none());
    }
    tokio::time::sleep(MISS_INTERVAL - Duration::from_millis(1)).await;
    assert!(jwks.key_after_refresh("forged-x").await.is_none());
    assert_eq!(fake.calls(), 1, "rate-limited within the interval");
    // A rotation: the new key is found by the first miss after the interval.
    fake.serve(Some((&set(&[fixture!("ec-1.jwk.json")]), None)));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(jwks.key_after_refresh("ec-1").await.is_some());
    assert_eq!(fake.calls(), 2);
    assert!(jwks.cached("ed-1").is_none(), "the set is replaced whole");
}

#[tokio::test(start_paused = true)]
async fn max_age_schedules_the_next_fetch_within_bounds() {
    let fake = Fake::new(
        &set(&[fixture!("ed-1.jwk.json")]),
        Some("public, max-age=120"),
        Duration::ZERO,
    );
    let jwks = jwks(&fake);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(jwks.clone().run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(fake.calls(), 1, "fetched at start");
    tokio::time::sleep(Duration::from_secs(119)).await;
    assert_eq!(fake.calls(), 1);
    // Too short a max-age is raised to the floor (60 s).
    fake.serve(Some((
        &set(&[fixture!("ed-1.jwk.json")]),
        Some("max-age=2"),
    )));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.calls(), 2, "refetched when stale");
    tokio::time::sleep(Duration::from_secs(58)).await;
    assert_eq!(fake.calls(), 2);
    // No max-age: five minutes.
    fake.serve(Some((&set(&[fixture!("ed-1.jwk.json")]), None)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.calls(), 3);
    // Fetched at 180 s: stale at 480 s.
    tokio::time::sleep(DEFAULT_TTL - Duration::from_secs(3)).await;
    assert_eq!(fake.calls(), 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.calls(), 4);
    cancel.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_fetches_keep_the_previous_keys_and_retry_later() {
    let fake = Fake::new(
        &set(&[fixture!("ed-1.jwk.json")]),
        Some("max-age=60"),
        Duration::ZERO,
    );
    let jwks = jwks(&fake);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(jwks.clone().run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    fake.serve(None);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(fake.calls(), 2);
    assert!(jwks.cached("ed-1").is_some(), "old keys kept");
    assert_eq!(jwks.failed.get(), 1);
    tokio::time::sleep(DEFAULT_MIN_TTL).await;
    assert_eq!(fake.calls(), 3, "retried after the floor");
    cancel.cancel();
    run.await.unwrap();
}

#[test]
fn key_types_decide_the_algorithms() {
    let jwk = |v: serde_json::Value| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(v).unwrap();
    let mut rsa: serde_json::Value = serde_json::from_str(fixture!("rsa-1.jwk.json")).unwrap();
    assert_eq!(
        parse::algorithms(&jwk(rsa.clone())),
        Some(&[Algorithm::RS256][..])
    );
    rsa["alg"] = json!("HS256");
    assert_eq!(
        parse::algorithms(&jwk(rsa.clone())),
        None,
        "alg contradicts kty"
    );
    rsa.as_object_mut().unwrap().remove("alg");
    assert_eq!(parse::algorithms(&jwk(rsa.clone())).unwrap().len(), 3);
    rsa["use"] = json!("enc");
    assert_eq!(parse::algorithms(&jwk(rsa)), None);
    let oct = json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"});
    assert_eq!(parse::algorithms(&jwk(oct)), None, "no shared secrets");
    let ec: serde_json::Value = serde_json::from_str(fixture!("ec-1.jwk.json")).unwrap();
    assert_eq!(parse::algorithms(&jwk(ec)), Some(&[Algorithm::ES256][..]));
    let ed: serde_json::Value = serde_json::from_str(fixture!("ed-1.jwk.json")).unwrap();
    assert_eq!(parse::algorithms(&jwk(ed)), Some(&[Algorithm::EdDSA][..]));
}

#[test]
fn cache_control_is_clamped() {
    assert_eq!(
        parse::max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        parse::max_age("Max-Age=\"7\""),
        Some(Duration::from_secs(7))
    );
    assert_eq!(parse::max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(parse::max_age("public"), None);
    let min = DEFAULT_MIN_TTL;
    assert_eq!(parse::ttl(None, min), DEFAULT_TTL);
    assert_eq!(parse::ttl(Some(Duration::ZERO), min), min);
    assert_eq!(
        parse::ttl(Some(Duration::from_secs(u32::MAX.into())), min),
        MAX_TTL
    );
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = ConnectClaims {
        sub: "42".into(),
        ..ConnectClaims::default()
    };
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_key_not_the_header_decides_the_algorithm() {
    let body = set(&[fixture!("rsa-1.jwk.json"), fixture!("ed-1.jwk.json")]);
    let fake = Fake::new(&body, None, Duration::ZERO);
    let with_secret = |hmac: Option<&str>| Verifier {
        hmac: hmac.map(|s| {
            Arc::new(Keyed {
                key: jsonwebtoken::DecodingKey::from_secret(s.as_bytes()),
                validation: crate::auth::validation(
                    &crate::auth::base_validation(&Default::default()),
                    &[Algorithm::HS256],
                ),
            })
        }),
        pem: None,
        jwks: Some(jwks(&fake)),
    };
    let ed = EncodingKey::from_ed_pem(fixture!("ed-1.pem").as_bytes()).unwrap();
    let v = with_secret(None);
    assert_eq!(
        v.verify_connect(&sign(Algorithm::EdDSA, "ed-1", &ed))
            .await
            .unwrap()
            .sub,
        "42"
    );
    // Signed right, but the kid names an RSA key: EdDSA is not its algorithm.
    assert!(v
        .verify_connect(&sign(Algorithm::EdDSA, "rsa-1", &ed))
        .await
        .is_err());
    // HS256 "signed" with the RSA key's public modulus, kid of that key.
    let rsa: serde_json::Value = serde_json::from_str(fixture!("rsa-1.jwk.json")).unwrap();
    let public = EncodingKey::from_secret(rsa["n"].as_str().unwrap().as_bytes());
    let confused = sign(Algorithm::HS256, "rsa-1", &public);
    assert!(matches!(
        v.verify_connect(&confused).await,
        Err(AuthError::InvalidToken { .. })
    ));
    assert!(with_secret(Some("s3cret"))
        .verify_connect(&confused)
        .await
        .is_err());
    let hs = sign(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(b"s3cret"),
    );
    assert!(
        v.verify_connect(&hs).await.is_err(),
        "HS only with hmac_secret"
    );
    assert!(with_secret(Some("s3cret"))
        .verify_connect(&hs)
        .await
        .is_ok());
    assert_eq!(fake.calls(), 1);
}
