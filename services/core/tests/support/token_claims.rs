//! Header and claims strategies of the token verifier's properties: typed
//! claims Herald reads (with times well past or well ahead), and headers and
//! claims of any JSON shape. Used by `fuzz_token.rs`.

use herald_core::auth::now_secs;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

pub fn hmac() -> impl Strategy<Value = Algorithm> {
    select(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9:_-]{0,12}", "\\PC{0,16}"]
}

/// JSON of any shape; with `floats`, numbers that serde_json may read back
/// a unit in the last place off (so not where values must come back equal).
fn json_value(floats: bool) -> impl Strategy<Value = Value> {
    let float = any::<f64>().prop_map(Value::from);
    let number = if floats {
        float.boxed()
    } else {
        any::<i64>().prop_map(Value::from).boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        number,
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Seconds from now: well past, well ahead (no race with the clock's next second).
pub fn when() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        (-1_000_000i64..-5).prop_map(Some),
        (60i64..1_000_000).prop_map(Some)
    ]
}

#[derive(Debug, Clone)]
pub struct Claims {
    pub sub: Option<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub info: Option<Value>,
    pub channels: Vec<String>,
    pub channel: Option<String>,
    pub client: Option<String>,
}

pub fn claims() -> impl Strategy<Value = Claims> {
    let info = prop::option::of(json_value(false).prop_filter("null is no info", |v| !v.is_null()));
    let channels = prop::collection::vec(text(), 0..3);
    let (channel, client) = (prop::option::of(text()), prop::option::of(text()));
    (
        prop::option::of(text()),
        when(),
        when(),
        info,
        channels,
        channel,
        client,
    )
        .prop_map(|(sub, exp, nbf, info, channels, channel, client)| Claims {
            sub,
            exp,
            nbf,
            info,
            channels,
            channel,
            client,
        })
}

pub fn claims_json(c: &Claims, now: i64) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("sub", c.sub.clone().map(Value::from));
    put("exp", c.exp.map(|d| (now + d).into()));
    put("nbf", c.nbf.map(|d| (now + d).into()));
    put("info", c.info.clone());
    put(
        "channels",
        (!c.channels.is_empty()).then(|| json!(c.channels)),
    );
    put("channel", c.channel.clone().map(Value::from));
    put("client", c.client.clone().map(Value::from));
    Value::Object(o)
}

/// A header of any shape: the `alg` values that matter, and any JSON or bytes.
pub fn any_header() -> impl Strategy<Value = Vec<u8>> {
    let alg = prop_oneof![
        select(vec![
            "HS256", "HS384", "HS512", "none", "None", "RS256", "ES256", "EdDSA", "hs256", ""
        ])
        .prop_map(Value::from),
        json_value(true),
    ];
    let object = (
        alg,
        prop::collection::btree_map(text(), json_value(true), 0..3),
    )
        .prop_map(|(alg, extra)| {
            let mut o: Map<String, Value> = extra.into_iter().collect();
            o.insert("alg".into(), alg);
            Value::Object(o).to_string().into_bytes()
        });
    prop_oneof![
        4 => object,
        1 => json_value(true).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// Claims of any shape: the claims Herald reads, with values of any type.
pub fn any_claims() -> impl Strategy<Value = Vec<u8>> {
    let names = select(vec![
        "sub", "exp", "nbf", "iat", "aud", "iss", "info", "channels", "channel", "client",
    ]);
    let number = prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|d| Value::from(now_secs() + d)),
        any::<f64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
    ];
    let value = prop_oneof![number, json_value(true)];
    let object = prop::collection::btree_map(names, value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![
        4 => object.prop_map(|v| v.to_string().into_bytes()),
        1 => json_value(true).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}
