//! Configuration contract: layered sources, one-line errors with exit code 64,
//! `check-config`, `gentoken`, and namespaces created from the environment.

use herald_testkit::client::Client;
use herald_testkit::herald::{run_command, Herald, SECRET};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn invalid_configuration_names_the_key_and_exits_64() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("HERALD_CLIENT__QUEUE_SIZE", "many")], "queue_size"),
        (
            &[("HERALD_CLIENT__PONG_TIMEOUT", "30s")],
            "client.pong_timeout",
        ),
        (
            &[("HERALD_SERVR__ROLE", "gateway")],
            "servr: unknown section",
        ),
        (&[("HERALD_SERVER__ROLE", "gateway")], "auth.hmac_secret"),
        (&[("HERALD_AUTH__HMAC_SECRET", "s")], "api.key"),
        (
            &[("HERALD_NAMESPACES__CHAT__HISTORY_SIZE", "5")],
            "namespaces.chat",
        ),
        (
            &[("HERALD_ENGINE__REDIS_URL", "http://x")],
            "engine.redis_url",
        ),
        (
            &[("HERALD_SERVER__WORKER_THREADS", "0")],
            "server.worker_threads",
        ),
    ];
    for (env, expected) in cases {
        let (code, _, stderr) = run_command(BIN, &["check-config"], env).await.unwrap();
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[tokio::test]
async fn file_environment_and_flags_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[server]\nrole = \"gateway\"\n[auth]\nhmac_secret = \"from-file\"\n[client]\nqueue_size = 10\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = run_command(BIN, &["--config", path, "check-config"], &[])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("role gateway"), "{out}");
    let env = [
        ("HERALD_SERVER__ROLE", "publisher"),
        ("HERALD_API__KEY", "k"),
    ];
    let (_, out, _) = run_command(BIN, &["--config", path, "check-config"], &env)
        .await
        .unwrap();
    assert!(
        out.contains("role publisher"),
        "environment beats file: {out}"
    );
    let (_, out, _) = run_command(
        BIN,
        &["--config", path, "--role", "all", "check-config"],
        &env,
    )
    .await
    .unwrap();
    assert!(out.contains("role all"), "flag beats environment: {out}");
}

#[tokio::test]
async fn gentoken_signs_with_the_configured_secret() {
    let env = [
        ("HERALD_AUTH__HMAC_SECRET", SECRET),
        ("HERALD_API__KEY", "k"),
    ];
    let (code, out, err) = run_command(
        BIN,
        &[
            "gentoken",
            "--user",
            "42",
            "--ttl",
            "10m",
            "--channels",
            "a,b",
        ],
        &env,
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        out.trim(),
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["channels"], json!(["a", "b"]));
    let ttl = claims["exp"].as_i64().unwrap() - herald_testkit::herald::now();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
    let (code, _, err) = run_command(BIN, &["gentoken", "--user", "1"], &[])
        .await
        .unwrap();
    assert_eq!(code, 64, "no secret: {err}");
}

#[tokio::test]
async fn namespaces_come_from_the_environment() {
    let herald = Herald::start(
        BIN,
        &[
            ("HERALD_NAMESPACES__CHAT__HISTORY_SIZE", "100"),
            ("HERALD_NAMESPACES__CHAT__HISTORY_TTL", "5m"),
            ("HERALD_NAMESPACES__USER__HISTORY_SIZE", "3"),
        ],
    )
    .await
    .unwrap();
    let (mut client, connected) = Client::connect(&herald.ws_url(), &herald.token("u1"))
        .await
        .unwrap();
    assert_eq!(connected["subs"]["user:u1"]["recoverable"], true);
    let reply = client
        .command(json!({"subscribe": {"channel": "chat:lobby"}}))
        .await
        .unwrap();
    assert_eq!(reply["subscribe"]["recoverable"], true, "{reply}");
    for n in 0..5 {
        herald.publish("user:u1", json!({ "n": n })).await.unwrap();
    }
    let (_, body) = herald
        .api("history", json!({"channel": "user:u1", "limit": -1}))
        .await
        .unwrap();
    let pubs = body["result"]["publications"].as_array().unwrap();
    assert_eq!(pubs.len(), 3, "user history overridden to 3: {body}");
    assert_eq!(pubs[0]["data"]["n"], 2);
}
