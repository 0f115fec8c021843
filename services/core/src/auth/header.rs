//! The token header fields that pick the verification key (`alg`, `kid`),
//! read without allocating; the signature and claims are checked elsewhere.

use std::borrow::Cow;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Token headers up to this size are decoded on the stack: picking the key
/// allocates nothing beyond what `jsonwebtoken::decode` does anyway.
pub(super) const STACK_HEADER: usize = 512;

/// The header fields that pick the key.
#[derive(Deserialize)]
pub(super) struct Peek<'a> {
    pub(super) alg: Algorithm,
    #[serde(default, borrow)]
    pub(super) kid: Option<Kid<'a>>,
}

/// A `kid`, borrowed from the decoded header unless it has escapes (serde
/// would copy an `Option<Cow<str>>` always).
pub(super) struct Kid<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Kid<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Visitor).map(Kid)
    }
}
