//! `herald selftest` against a running node: passes end to end, and fails
//! with exit code 1 and one line naming the step when something is wrong.

use herald_testkit::herald::{run_command, Herald, API_KEY, SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Runs `herald selftest` against `h` with `env`: exit code, stdout, stderr.
async fn selftest(h: &Herald, ws: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let api = format!("http://{}", h.internal_addr);
    run_command(
        BIN,
        &["selftest", "--api", &api, "--ws", ws, "--timeout", "5s"],
        env,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn passes_against_a_running_node() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let env = [
        ("HERALD_AUTH__HMAC_SECRET", SECRET),
        ("HERALD_API__KEY", API_KEY),
    ];
    let (code, out, err) = selftest(&h, &h.ws_url(), &env).await;
    println!("{}", out.trim());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("selftest ok: "), "{out}");
    assert!(out.contains("subscribed selftest-"), "{out}");
    assert!(out.contains(" ms after publishing"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[tokio::test]
async fn names_the_failed_step_and_exits_1() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let wrong_key = [
        ("HERALD_AUTH__HMAC_SECRET", SECRET),
        ("HERALD_API__KEY", "wrong"),
    ];
    let (code, out, err) = selftest(&h, &h.ws_url(), &wrong_key).await;
    println!("{}", err.trim());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("selftest failed at publish"), "{err}");
    assert!(err.contains("401"), "{err}");

    let wrong_secret = [
        ("HERALD_AUTH__HMAC_SECRET", "wrong"),
        ("HERALD_API__KEY", API_KEY),
    ];
    let (code, _, err) = selftest(&h, &h.ws_url(), &wrong_secret).await;
    println!("{}", err.trim());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("selftest failed at connect"), "{err}");

    let env = [
        ("HERALD_AUTH__HMAC_SECRET", SECRET),
        ("HERALD_API__KEY", API_KEY),
    ];
    let not_ws = format!("ws://{}/connection/websocket", h.internal_addr);
    let (code, _, err) = selftest(&h, &not_ws, &env).await;
    println!("{}", err.trim());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("selftest failed at connect"), "{err}");

    let (code, _, err) = selftest(&h, &h.ws_url(), &[("HERALD_API__KEY", API_KEY)]).await;
    println!("{}", err.trim());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("selftest failed at configuration"), "{err}");
    assert!(err.contains("HERALD_AUTH__HMAC_SECRET"), "{err}");
}
