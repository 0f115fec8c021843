//! Tokens verified with a JWK Set (`auth.jwks_url`) served by a small HTTP
//! server in the test, which counts its requests: RS256, ES256 and EdDSA by
//! `kid`, key rotation found by one early fetch, forged kids bounded, HS
//! tokens only by the shared secret, `Cache-Control: max-age` honoured, an
//! oversize set refused with the previous keys kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_testkit::client::Client;
use herald_testkit::herald::{now, run_command, Herald, API_KEY, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/jwks/", $name))
    };
}

/// A JWK Set endpoint: serves `keys` with `Cache-Control`, records when it
/// was asked.
struct JwksServer {
    url: String,
    state: Arc<Mutex<Served>>,
    hits: watch::Receiver<Vec<Instant>>,
}

struct Served {
    keys: Vec<Value>,
    /// A body served instead of the keys.
    raw: Option<String>,
    cache_control: &'static str,
}

impl JwksServer {
    async fn start(jwks: &[&str], cache_control: &'static str) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(Mutex::new(Served {
            keys: Vec::new(),
            raw: None,
            cache_control,
        }));
        let (tx, hits) = watch::channel(Vec::new());
        let server = JwksServer { url, state, hits };
        server.serve(jwks);
        let state = server.state.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (state, tx) = (state.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    tx.send_modify(|hits| hits.push(Instant::now()));
                    let (body, cc) = {
                        let s = state.lock().unwrap();
                        let keys = json!({ "keys": s.keys }).to_string();
                        (s.raw.clone().unwrap_or(keys), s.cache_control)
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Cache-Control: {cc}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        server
    }

    /// Serves these keys from now on.
    fn serve(&self, jwks: &[&str]) {
        let keys = jwks
            .iter()
            .map(|j| serde_json::from_str(j).unwrap())
            .collect();
        self.state.lock().unwrap().keys = keys;
    }

    /// Serves `body` instead of the keys from now on.
    fn serve_raw(&self, body: String) {
        self.state.lock().unwrap().raw = Some(body);
    }

    fn requests(&self) -> usize {
        self.hits.borrow().len()
    }

    /// Waits (10 s at most) until `n` requests have arrived; their times.
    async fn wait_requests(&self, n: usize) -> Vec<Instant> {
        let mut hits = self.hits.clone();
        let wait = hits.wait_for(|h| h.len() >= n);
        let hits = match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(hits) => hits.unwrap().clone(),
            Err(_) => panic!("{} requests, {n} expected", self.requests()),
        };
        hits
    }
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn connect_claims(user: &str) -> Value {
    json!({ "sub": user, "exp": now() + 3600 })
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// Starts herald (with the test secret too) on `server`'s set and waits for
/// its first fetch.
async fn herald_on(server: &JwksServer, extra: &[(&str, &str)]) -> Herald {
    let mut env = vec![("HERALD_AUTH__JWKS_URL", server.url.as_str())];
    env.extend_from_slice(extra);
    let h = Herald::start(BIN, &env).await.unwrap();
    server.wait_requests(1).await;
    h
}

async fn accepted(h: &Herald, token: &str) -> Client {
    match Client::connect(&h.ws_url(), token).await {
        Ok((client, result)) => {
            assert!(result["client"].is_string(), "{result}");
            client
        }
        Err(e) => panic!("refused: {e}\n{}", h.log()),
    }
}

/// Connects with `token` and returns the close code.
async fn refused(h: &Herald, token: &str) -> u16 {
    let mut c = Client::open(&h.ws_url()).await.unwrap();
    c.send_raw(&json!({"id": 1, "connect": {"token": token}}).to_string())
        .await
        .unwrap();
    c.closed().await.unwrap().0
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_the_key_their_kid_names() {
    let keys = [
        fixture!("rsa-1.jwk.json"),
        fixture!("ec-1.jwk.json"),
        fixture!("ed-1.jwk.json"),
    ];
    let server = JwksServer::start(&keys, "max-age=600").await;
    let h = herald_on(&server, &[]).await;
    let rs = sign(
        Algorithm::RS256,
        "rsa-1",
        &rsa(fixture!("rsa-1.pem")),
        connect_claims("r"),
    );
    accepted(&h, &rs).await;
    let ec = EncodingKey::from_ec_pem(fixture!("ec-1.pem").as_bytes()).unwrap();
    accepted(
        &h,
        &sign(Algorithm::ES256, "ec-1", &ec, connect_claims("e")),
    )
    .await;
    let ed = EncodingKey::from_ed_pem(fixture!("ed-1.pem").as_bytes()).unwrap();
    accepted(
        &h,
        &sign(Algorithm::EdDSA, "ed-1", &ed, connect_claims("d")),
    )
    .await;
    // The shared secret keeps verifying HS tokens beside the set.
    accepted(&h, &h.token("hs")).await;
    // A known kid with a key of another type: the JWK decides the algorithm.
    let wrong = sign(Algorithm::EdDSA, "ec-1", &ed, connect_claims("x"));
    assert_eq!(refused(&h, &wrong).await, 3500);
    assert_eq!(server.requests(), 1, "known kids need no fetch");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("herald_jwks_refreshes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_jwks_refreshes_total{result=\"error\"} 0"));
}

#[tokio::test]
async fn an_unknown_kid_fetches_again_and_finds_the_rotated_key() {
    let server = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "max-age=600").await;
    let h = herald_on(&server, &[]).await;
    let (k1, k2) = (rsa(fixture!("rsa-1.pem")), rsa(fixture!("rsa-2.pem")));
    accepted(
        &h,
        &sign(Algorithm::RS256, "rsa-1", &k1, connect_claims("a")),
    )
    .await;
    server.serve(&[fixture!("rsa-1.jwk.json"), fixture!("rsa-2.jwk.json")]);
    accepted(
        &h,
        &sign(Algorithm::RS256, "rsa-2", &k2, connect_claims("b")),
    )
    .await;
    assert_eq!(server.requests(), 2, "one fetch for the new kid");
    // Right after that fetch, another unknown kid is refused without one.
    let forged = sign(Algorithm::RS256, "rsa-3", &k1, connect_claims("c"));
    assert_eq!(refused(&h, &forged).await, 3500);
    assert_eq!(server.requests(), 2, "rate-limited");
}

#[tokio::test]
async fn a_burst_of_forged_kids_causes_a_bounded_number_of_fetches() {
    let server = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "max-age=600").await;
    let h = Arc::new(herald_on(&server, &[]).await);
    let key = Arc::new(rsa(fixture!("rsa-1.pem")));
    // Five waves of ten: concurrent misses share a fetch, later waves are
    // rate-limited.
    for _ in 0..5 {
        let wave: Vec<_> = (0..10)
            .map(|_| {
                let (h, key) = (h.clone(), key.clone());
                tokio::spawn(async move {
                    let kid = format!("forged-{:016x}", rand::random::<u64>());
                    refused(&h, &sign(Algorithm::RS256, &kid, &key, connect_claims("m"))).await
                })
            })
            .collect();
        for connect in wave {
            assert_eq!(connect.await.unwrap(), 3500);
        }
    }
    // The start-up fetch, and at most one for all fifty misses.
    assert!(server.requests() <= 2, "{} fetches", server.requests());
    accepted(
        &h,
        &sign(Algorithm::RS256, "rsa-1", &key, connect_claims("ok")),
    )
    .await;
}

#[tokio::test]
async fn hs_tokens_are_verified_by_the_secret_only() {
    let server = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "max-age=600").await;
    let h = herald_on(&server, &[]).await;
    // HS256 "signed" with the RSA key's public modulus, kid of that key.
    let jwk: Value = serde_json::from_str(fixture!("rsa-1.jwk.json")).unwrap();
    let public = EncodingKey::from_secret(jwk["n"].as_str().unwrap().as_bytes());
    let confused = sign(Algorithm::HS256, "rsa-1", &public, connect_claims("m"));
    assert_eq!(refused(&h, &confused).await, 3500);
    let by_secret = EncodingKey::from_secret(SECRET.as_bytes());
    accepted(
        &h,
        &sign(Algorithm::HS256, "rsa-1", &by_secret, connect_claims("s")),
    )
    .await;

    // Without a secret, no HS token at all (and no dev mode either).
    let env = [
        ("HERALD_API__KEY", API_KEY),
        ("HERALD_AUTH__JWKS_URL", &server.url),
    ];
    let only_jwks = Herald::spawn(BIN, &env).await.unwrap();
    only_jwks.wait_ready().await.unwrap();
    let hs = sign(Algorithm::HS256, "rsa-1", &by_secret, connect_claims("s"));
    assert_eq!(refused(&only_jwks, &hs).await, 3500);
    assert!(!only_jwks.log().contains("DEV MODE"));
}

#[tokio::test]
async fn subscription_tokens_verify_through_the_jwks() {
    let server = JwksServer::start(&[fixture!("ec-1.jwk.json")], "max-age=600").await;
    let h = herald_on(&server, &[]).await;
    let ec = EncodingKey::from_ec_pem(fixture!("ec-1.pem").as_bytes()).unwrap();
    let mut c = accepted(&h, &h.token("alice")).await;
    let grant = json!({ "sub": "alice", "channel": "jwks-news", "exp": now() + 600 });
    let token = sign(Algorithm::ES256, "ec-1", &ec, grant);
    let reply = c
        .command(json!({ "subscribe": { "channel": "jwks-news", "token": token } }))
        .await
        .unwrap();
    assert_eq!(reply["subscribe"]["expires"], json!(true), "{reply}");
    let rsa2 = rsa(fixture!("rsa-2.pem"));
    let grant = json!({ "sub": "alice", "channel": "jwks-other" });
    let forged = sign(Algorithm::RS256, "rsa-2", &rsa2, grant);
    c.send_raw(
        &json!({"id": 9, "subscribe": {"channel": "jwks-other", "token": forged}}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 3500);
}

#[tokio::test]
async fn cache_control_max_age_decides_when_the_set_is_fetched_again() {
    let short = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "public, max-age=1").await;
    let long = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "public, max-age=3600").await;
    let floor = [("HERALD_AUTH__JWKS_MIN_TTL", "1s")];
    let _a = herald_on(&short, &floor).await;
    let _b = herald_on(&long, &floor).await;
    let hits = short.wait_requests(3).await;
    for pair in hits.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "refetched after {gap:?}");
    }
    assert_eq!(long.requests(), 1, "max-age=3600 still fresh");
}

#[tokio::test]
async fn an_oversize_set_is_refused_and_the_previous_keys_stay() {
    let server = JwksServer::start(&[fixture!("rsa-1.jwk.json")], "max-age=1").await;
    let h = herald_on(&server, &[("HERALD_AUTH__JWKS_MIN_TTL", "1s")]).await;
    let key = rsa(fixture!("rsa-1.pem"));
    server.serve_raw(format!(
        "{{\"keys\":[],\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    ));
    // Fetches follow one another: the fourth begins after the third failed.
    server.wait_requests(4).await;
    accepted(
        &h,
        &sign(Algorithm::RS256, "rsa-1", &key, connect_claims("a")),
    )
    .await;
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("herald_jwks_refreshes_total{result=\"error\"} 2")
            || metrics.contains("herald_jwks_refreshes_total{result=\"error\"} 3"),
        "{metrics}"
    );
    let log = h.log();
    let warnings = log.matches("jwks fetch failed").count();
    assert_eq!(warnings, 1, "once per failure streak:\n{log}");
    assert!(log.contains("body larger than"), "{log}");
}

#[tokio::test]
async fn jwks_url_with_public_key_or_a_bad_url_is_a_config_error() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("HERALD_AUTH__JWKS_URL", "https://idp.example/jwks.json"),
                ("HERALD_AUTH__PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----"),
            ],
            "auth.jwks_url",
        ),
        (
            &[("HERALD_AUTH__JWKS_URL", "file:///etc/passwd")],
            "auth.jwks_url",
        ),
    ];
    for (env, expected) in cases {
        let mut env = env.to_vec();
        env.push(("HERALD_API__KEY", API_KEY));
        let (code, _, stderr) = run_command(BIN, &["check-config"], &env).await.unwrap();
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
