//! Unit tests of [`super::Verifier`]: HS tokens, claims, algorithm routing.

use super::*;

fn verifier() -> Verifier {
    Verifier::new(&Config {
        hmac_secret: Some("s3cret".into()),
        ..Config::default()
    })
    .unwrap()
}

#[tokio::test]
async fn accepts_valid_and_refuses_expired_or_forged_tokens() {
    let v = verifier();
    let t = mint_connect("s3cret", "42", Some(Duration::from_secs(60)), vec![]);
    assert_eq!(v.verify_connect(&t).await.unwrap().sub, "42");
    let no_exp = mint_connect("s3cret", "7", None, vec![]);
    assert_eq!(v.verify_connect(&no_exp).await.unwrap().exp, None);
    let expired = mint(
        "s3cret",
        &ConnectClaims {
            sub: "42".into(),
            exp: Some(now_secs() - 5),
            ..Default::default()
        },
    );
    assert_eq!(
        v.verify_connect(&expired).await.unwrap_err(),
        AuthError::TokenExpired
    );
    let forged = mint_connect("other", "42", None, vec![]);
    assert!(matches!(
        v.verify_connect(&forged).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn refuses_alg_none_and_channel_claims() {
    let v = verifier();
    // {"alg":"none","typ":"JWT"}.{"sub":"42"}.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiJ9.";
    assert!(matches!(
        v.verify_connect(none).await,
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
    assert!(v.verify_connect(&sub_token).await.is_err());
    assert_eq!(
        v.verify_subscribe(&sub_token).await.unwrap().channel,
        "secret:1"
    );
}
