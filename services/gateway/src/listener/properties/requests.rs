//! Requests the classifier's properties generate: header lines from the
//! handshake's grammar with right and wrong values, and valid handshakes in
//! any header order, case, whitespace and line ending.

use herald_testkit::fuzz::recase;
use proptest::prelude::*;
use proptest::sample::select;

use crate::ws;

/// A header line: the name in random case, the value with optional whitespace around it.
pub(super) fn line(name: &str, value: &str) -> impl Strategy<Value = String> {
    let ows = || select(vec!["", " ", "  ", "\t", " \t"]);
    let (name, value) = (name.to_owned(), value.to_owned());
    (any::<u64>(), ows(), ows(), select(vec!["\r\n", "\n"]))
        .prop_map(move |(mask, l, r, eol)| format!("{}:{l}{value}{r}{eol}", recase(&name, mask)))
}

/// A header from the grammar: any of the handshake's names with a right or wrong value.
pub(super) fn any_line() -> impl Strategy<Value = String> {
    let values: Vec<(&str, Vec<&str>)> = vec![
        ("Host", vec!["app.example", "localhost:8000"]),
        (
            "Origin",
            vec![
                "https://app.example",
                "https://evil.example",
                "http://localhost:8000",
            ],
        ),
        (
            "Connection",
            vec![
                "Upgrade",
                "keep-alive, Upgrade",
                "keep-alive",
                "upgradex",
                "",
            ],
        ),
        (
            "Upgrade",
            vec![
                "websocket",
                "WebSocket",
                "h2c",
                "websocket, h2c",
                "web socket",
            ],
        ),
        ("Sec-WebSocket-Version", vec!["13", "8", "13, 8", "", "013"]),
        (
            "Sec-WebSocket-Key",
            vec!["dGhlIHNhbXBsZSBub25jZQ==", "x", ""],
        ),
        (
            "Sec-WebSocket-Protocol",
            vec![
                "centrifuge-json",
                "centrifuge-protobuf",
                "a, centrifuge-json",
            ],
        ),
        ("User-Agent", vec!["Mozilla/5.0", "centrifuge-js"]),
    ];
    select(values)
        .prop_flat_map(|(name, values)| select(values).prop_flat_map(move |v| line(name, v)))
}

/// A handshake as a client may send it: the required headers and some of a
/// browser's others, in any order, case and whitespace; the head's length;
/// the key; whether the subprotocol is offered.
pub(super) fn handshake() -> impl Strategy<Value = (String, Vec<u8>, bool)> {
    // Base64 of 16 bytes, as RFC 6455 section 4.1 asks of clients.
    let key = "[A-Za-z0-9+/]{21}[AQgw]==";
    let connection = select(vec![
        "Upgrade",
        "upgrade",
        "keep-alive, Upgrade",
        "Upgrade, HTTP2-Settings",
    ]);
    let upgrade = select(vec!["websocket", "WebSocket", "WEBSOCKET"]);
    let origin = select(vec![
        None,
        Some("https://app.example"),
        Some("http://localhost:8000"),
    ]);
    (
        key,
        connection,
        upgrade,
        origin,
        any::<bool>(),
        select(vec!["", "?cf_ws_frame_ping_pong=true"]),
    )
        .prop_flat_map(|(key, connection, upgrade, origin, offer, query)| {
            let mut lines = vec![
                line("Host", "localhost:8000").boxed(),
                line("Connection", connection).boxed(),
                line("Upgrade", upgrade).boxed(),
                line("Sec-WebSocket-Version", "13").boxed(),
                line("Sec-WebSocket-Key", &key).boxed(),
                line("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)").boxed(),
                line(
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; client_max_window_bits",
                )
                .boxed(),
                line("Cache-Control", "no-cache").boxed(),
            ];
            if let Some(origin) = origin {
                lines.push(line("Origin", origin).boxed());
            }
            if offer {
                lines.push(line("Sec-WebSocket-Protocol", "centrifuge-json").boxed());
            }
            (lines.prop_shuffle(), select(vec!["\r\n", "\n"])).prop_map(move |(lines, eol)| {
                let head = format!(
                    "GET {}{query} HTTP/1.1\r\n{}{eol}",
                    ws::PATH,
                    lines.concat()
                );
                (head, key.clone().into_bytes(), offer)
            })
        })
}
