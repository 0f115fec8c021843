//! Property tests of [`check`] on its own: any list of headers (handshake
//! names in any case, values of any bytes) is judged as RFC 6455 section
//! 4.2.1 says, refusals in the order the listener answers them.

use herald_testkit::fuzz::recase;
use proptest::prelude::*;
use proptest::sample::select;

use herald_testkit::fuzz;

use herald_core::protocol::Format;

use super::{check, Accepted, Refusal, SUBPROTOCOL, SUBPROTOCOL_PROTOBUF};

/// The values of the headers called `name` (in any case).
fn named<'a>(headers: &'a [(String, Vec<u8>)], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// What the RFC asks of `headers`, read naively; the judge refuses `Origin: evil`.
fn spec(headers: &[(String, Vec<u8>)]) -> Result<Accepted, Refusal> {
    let named = |name: &'static str| named(headers, name);
    let lists = |n: &'static str, token: &str| {
        named(n).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if named("origin").next() == Some(b"evil") {
        return Err(Refusal::Origin);
    }
    if !lists("connection", "upgrade") || !lists("upgrade", "websocket") {
        return Err(Refusal::NotUpgrade);
    }
    if named("sec-websocket-version").next() != Some(b"13") {
        return Err(Refusal::Version);
    }
    let key = named("sec-websocket-key").next().ok_or(Refusal::NoKey)?;
    let subprotocol = named("sec-websocket-protocol")
        .flat_map(|v| v.split(|&b| b == b','))
        .find_map(|t| {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(SUBPROTOCOL.as_bytes()) {
                Some(SUBPROTOCOL)
            } else if t.eq_ignore_ascii_case(SUBPROTOCOL_PROTOBUF.as_bytes()) {
                Some(SUBPROTOCOL_PROTOBUF)
            } else {
                None
            }
        });
    Ok(Accepted {
        accept: tungstenite::handshake::derive_accept_key(key),
        subprotocol,
        format: if subprotocol == Some(SUBPROTOCOL_PROTOBUF) {
            Format::Protobuf
        } else {
            Format::Json
        },
    })
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = select(vec![
        "Origin",
        "Host",
        "Connection",
        "Upgrade",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Protocol",
        "X-Other",
    ]);
    let word = select(vec![
        &b"upgrade"[..],
        b"Upgrade",
        b"websocket",
        b"WebSocket",
        b"13",
        b"8",
        b"centrifuge-json",
        b"centrifuge-protobuf",
        b"evil",
        b"keep-alive",
        b",",
        b" ",
        b"\t",
        b"\xff",
    ]);
    let value = prop::collection::vec(word, 0..5).prop_map(|w| w.concat());
    let value = prop_oneof![value, prop::collection::vec(any::<u8>(), 0..12)];
    (name, any::<u64>(), value).prop_map(|(name, mask, value)| (recase(name, mask), value))
}

/// The headers a handshake needs, each usually there and usually right, so
/// that accepted requests and every refusal are all common.
fn handshake_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let pick = |name: &'static str, values: &[&'static [u8]]| {
        let values = select(values.to_vec());
        prop::option::weighted(0.85, (values, any::<u64>()))
            .prop_map(move |h| h.map(|(value, mask)| (recase(name, mask), value.to_vec())))
    };
    (
        pick(
            "Connection",
            &[b"Upgrade", b"keep-alive, Upgrade", b"keep-alive"],
        ),
        pick("Upgrade", &[b"websocket", b"WebSocket", b"h2c"]),
        pick("Sec-WebSocket-Version", &[b"13", b"13", b"8"]),
        pick("Sec-WebSocket-Key", &[b"dGhlIHNhbXBsZSBub25jZQ=="]),
        pick(
            "Sec-WebSocket-Protocol",
            &[
                b"centrifuge-json",
                b"a, centrifuge-json",
                b"b",
                b"centrifuge-protobuf, centrifuge-json",
            ],
        ),
        pick("Origin", &[b"https://app.example", b"evil"]),
    )
        .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f].into_iter().flatten().collect())
}

#[test]
fn any_headers_are_judged_as_the_rfc_says() {
    let strategy = (handshake_headers(), prop::collection::vec(header(), 0..8))
        .prop_map(|(required, others)| [required, others].concat())
        .prop_shuffle();
    fuzz::run("handshake_headers", 2000, strategy, |headers| {
        let got = check(
            |origin, _| origin != Some("evil"),
            None,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        );
        prop_assert_eq!(got, spec(&headers));
        Ok(())
    });
}
