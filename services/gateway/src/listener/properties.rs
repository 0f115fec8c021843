//! Property tests of the first-request classifier: the committed corpus
//! (`fuzz/corpus/http/`) and mutations of it, random bytes and generated
//! requests, fed whole and in pieces. Nothing is ever answered as a WebSocket
//! upgrade unless its head holds what RFC 6455 section 4.2.1 requires, no
//! head over [`FIRST_HEAD_MAX`] is answered here, and real handshakes are
//! accepted in any header order, case and whitespace.

use proptest::prelude::*;
use proptest::sample::select;

use herald_testkit::fuzz;

use super::{classify, First, FIRST_HEADERS_MAX, FIRST_HEAD_MAX};
use crate::ws;

mod requests;

use requests::{any_line, handshake};

/// What classifying gave, comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Incomplete: read more.
    Pending,
    Http,
    WebSocket {
        head: usize,
        response: String,
    },
    /// A one-way SSE request the listener serves.
    Sse,
}

/// The judge the tests configure: requests without `Origin`, same-origin
/// pages and one listed origin pass (as with `auth.allowed_origins`).
fn origin_allowed(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    origin == "https://app.example" || (authority.is_some() && authority == host)
}

fn outcome(bytes: &[u8]) -> Outcome {
    match classify(bytes, origin_allowed) {
        None => Outcome::Pending,
        Some(First::Http) => Outcome::Http,
        Some(First::Sse(_)) => Outcome::Sse,
        Some(First::WebSocket { accepted, head }) => Outcome::WebSocket {
            head,
            response: accepted.response_head(),
        },
        // The test-only echo endpoint: not the client endpoint these properties describe.
        #[cfg(feature = "autobahn-echo")]
        Some(First::Echo { .. }) => Outcome::Http,
    }
}

/// Classifies `bytes` as the listener reads them: growing prefixes ending at
/// `cuts`, stopping at the first decision.
fn outcome_in_pieces(bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    for end in ends {
        let first = outcome(&bytes[..end]);
        if first != Outcome::Pending {
            return first;
        }
    }
    Outcome::Pending
}

/// RFC 6455 section 4.2.1 and Herald's origin rule, read from a head's text
/// without httparse: `Some((key, subprotocol to echo))` for an acceptable
/// upgrade request. Lenient where httparse is strict, so that whatever
/// httparse accepts is judged here too.
fn spec(head: &[u8]) -> Option<(Vec<u8>, Option<&'static str>)> {
    // RFC 9112 section 2.2: empty lines before the request line are ignored.
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = request_line.splitn(3, ' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if method != "GET" || path != ws::PATH || version != "HTTP/1.1" {
        return None;
    }
    let lists = |v: &[u8], token: &str| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    let text = |v: &[u8]| std::str::from_utf8(v).unwrap_or("\u{fffd}").to_owned();
    let (mut origin, mut host, mut version, mut key) = (None, None, None, None);
    let (mut connection, mut upgrade, mut subprotocol) = (false, false, None);
    // Herald speaks two subprotocols and echoes the first one offered.
    let spoken = [
        ws::handshake::SUBPROTOCOL,
        ws::handshake::SUBPROTOCOL_PROTOBUF,
    ];
    let first_spoken = |v: &[u8]| {
        v.split(|&b| b == b',').find_map(|t| {
            spoken
                .into_iter()
                .find(|p| t.trim_ascii().eq_ignore_ascii_case(p.as_bytes()))
        })
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = String::from_utf8_lossy(line[..colon].trim_ascii()).to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii();
        match name.as_str() {
            "origin" => origin = origin.or(Some(text(value))),
            "host" => host = host.or(Some(text(value))),
            "connection" => connection |= lists(value, "upgrade"),
            "upgrade" => upgrade |= lists(value, "websocket"),
            "sec-websocket-version" => version = version.or(Some(value.to_vec())),
            "sec-websocket-key" => key = key.or(Some(value.to_vec())),
            "sec-websocket-protocol" => subprotocol = subprotocol.or_else(|| first_spoken(value)),
            _ => {}
        }
    }
    let allowed = origin_allowed(origin.as_deref(), host.as_deref());
    let ok = allowed && connection && upgrade && version.as_deref() == Some(b"13");
    Some((key.filter(|_| ok)?, subprotocol))
}

/// The `101` answer for `key`, as the spec would give it.
fn answer((key, subprotocol): (Vec<u8>, Option<&str>)) -> String {
    let accept = tungstenite::handshake::derive_accept_key(&key);
    let protocol = subprotocol.map_or(String::new(), |p| {
        format!("sec-websocket-protocol: {p}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {accept}\r\n{protocol}\r\n"
    )
}

/// What holds for any input: only short inputs stay pending, and an upgrade
/// is answered only for a head within the cap that the spec accepts.
fn check_invariants(bytes: &[u8], outcome: &Outcome) -> Result<(), TestCaseError> {
    match outcome {
        Outcome::Pending => prop_assert!(bytes.len() < FIRST_HEAD_MAX),
        Outcome::Http => {}
        Outcome::Sse => prop_assert!(is_sse_request(bytes), "{:?}", bytes),
        Outcome::WebSocket { head, response } => {
            prop_assert!(*head <= bytes.len().min(FIRST_HEAD_MAX));
            let expected = spec(&bytes[..*head]).map(answer);
            prop_assert_eq!(Some(response), expected.as_ref(), "{:?}", bytes);
        }
    }
    Ok(())
}

/// Whether a head's request line is a GET of the SSE endpoint.
fn is_sse_request(bytes: &[u8]) -> bool {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .skip_while(|l| l.is_empty() || *l == b"\r");
    let line = lines.next().unwrap_or_default();
    line.starts_with(b"GET /connection/sse ") || line.starts_with(b"GET /connection/sse?")
}

/// Pieces of HTTP/1.1 request heads that mutations insert.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b": ",
    b", ",
    b" ",
    b"\t",
    b"?",
    b"\0",
    b"\xff",
    b"GET /connection/websocket HTTP/1.1\r\n",
    b"Connection: Upgrade\r\n",
    b"Upgrade: websocket\r\n",
    b"Sec-WebSocket-Version: 13\r\n",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    b"Sec-WebSocket-Protocol: centrifuge-json\r\n",
    b"Origin: https://evil.example\r\n",
    b"Host: app.example\r\n",
];

#[test]
fn corpus_and_mutations_classify_alike_whole_and_in_pieces() {
    let corpus = fuzz::corpus("http");
    for (name, entry) in &corpus {
        let whole = outcome(entry);
        check_invariants(entry, &whole).unwrap();
        // Every corpus request is complete: the listener decides at once.
        assert_ne!(whole, Outcome::Pending, "{name}");
    }
    let strategy = (
        fuzz::mutated(&corpus, TOKENS, 8),
        prop::collection::vec(any::<usize>(), 0..6),
    );
    fuzz::run("http_mutations", 2000, strategy, |((_, bytes), cuts)| {
        let whole = outcome(&bytes);
        check_invariants(&bytes, &whole)?;
        prop_assert_eq!(outcome_in_pieces(&bytes, &cuts), whole);
        Ok(())
    });
}

#[test]
fn random_bytes_are_never_an_upgrade_without_its_headers() {
    let prefix = select(vec![
        &b""[..],
        b"GET /connection/websocket HTTP/1.1\r\n",
        b"GET /connection/websocket HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n",
    ]);
    let strategy = (prefix, prop::collection::vec(any::<u8>(), 0..1500));
    fuzz::run("http_random", 2000, strategy, |(prefix, tail)| {
        let bytes = [prefix, &tail].concat();
        check_invariants(&bytes, &outcome(&bytes))
    });
}

#[test]
fn generated_requests_are_upgrades_exactly_when_the_spec_says() {
    let request_line = (
        select(vec!["GET", "GET", "POST", "get", "HEAD"]),
        select(vec![
            "/connection/websocket",
            "/connection/websocket?cf_ws_frame_ping_pong=true",
            "/connection/websocketx",
            "/connection/websocket/",
            "/connection/sse",
            "/",
        ]),
        select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
    );
    let strategy = (
        request_line,
        prop::collection::vec(any_line(), 0..12),
        select(vec!["\r\n", "\n"]),
        prop::collection::vec(any::<u8>(), 0..32),
    );
    fuzz::run(
        "http_generated",
        2000,
        strategy,
        |((m, p, v), lines, eol, frames)| {
            let head = format!("{m} {p} {v}\r\n{}{eol}", lines.concat());
            let bytes = [head.as_bytes(), &frames].concat();
            let expected = match spec(head.as_bytes()) {
                Some(key) => Outcome::WebSocket {
                    head: head.len(),
                    response: answer(key),
                },
                None if m == "GET" && p == "/connection/sse" => Outcome::Sse,
                None => Outcome::Http,
            };
            prop_assert_eq!(outcome(&bytes), expected, "{}", head);
            Ok(())
        },
    );
}

#[test]
fn handshakes_in_any_header_order_case_and_whitespace_are_accepted() {
    let strategy = (
        handshake(),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<usize>(), 0..6),
    );
    fuzz::run(
        "http_handshakes",
        1000,
        strategy,
        |((head, key, offer), frames, cuts)| {
            let bytes = [head.as_bytes(), &frames].concat();
            let expected = Outcome::WebSocket {
                head: head.len(),
                response: answer((key, offer.then_some(ws::handshake::SUBPROTOCOL))),
            };
            prop_assert_eq!(outcome_in_pieces(&bytes, &cuts), expected, "{}", head);
            Ok(())
        },
    );
}

#[test]
fn heads_over_the_cap_are_left_to_hyper() {
    let strategy = (
        handshake(),
        FIRST_HEAD_MAX - 600..FIRST_HEAD_MAX + 600,
        prop::collection::vec(any::<usize>(), 0..6),
    );
    fuzz::run(
        "http_over_cap",
        500,
        strategy,
        |((head, key, offer), pad, cuts)| {
            // A padding header makes the head about `pad` bytes long.
            let filler = "a".repeat(pad.saturating_sub(head.len()).max(1));
            let head = head.replacen("\r\n", &format!("\r\nX-Pad: {filler}\r\n"), 1);
            let bytes = head.as_bytes();
            let got = outcome_in_pieces(bytes, &cuts);
            if head.len() <= FIRST_HEAD_MAX {
                let response = answer((key, offer.then_some(ws::handshake::SUBPROTOCOL)));
                prop_assert_eq!(
                    got,
                    Outcome::WebSocket {
                        head: head.len(),
                        response
                    }
                );
            } else {
                prop_assert_eq!(&got, &Outcome::Http);
                // However it arrives, a buffer at the cap is decided: never read further here.
                prop_assert_eq!(outcome(&bytes[..FIRST_HEAD_MAX]), Outcome::Http);
            }
            Ok(())
        },
    );
}

#[test]
fn too_many_headers_are_left_to_hyper() {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ws::PATH
    );
    for i in 0..FIRST_HEADERS_MAX {
        head.push_str(&format!("X-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(outcome(head.as_bytes()), Outcome::Http);
}

#[test]
fn sse_requests_are_served_unless_they_ask_for_emulation() {
    let sse = |target: &str, version: &str| {
        let head = format!("GET {target} {version}\r\nHost: h\r\nLast-Event-ID: 1:e:c\r\n\r\n");
        match classify(head.as_bytes(), origin_allowed) {
            Some(First::Sse(request)) => Some(request),
            Some(First::Http) => None,
            _ => panic!("{head}"),
        }
    };
    let request = sse("/connection/sse?token=t&channels=a,b", "HTTP/1.1").expect("served");
    assert!(!request.is_http10());
    assert!(sse("/connection/sse", "HTTP/1.0")
        .expect("served")
        .is_http10());
    let json = "%7B%22token%22%3A%22t%22%7D";
    assert!(sse(&format!("/connection/sse?cf_connect={json}"), "HTTP/1.1").is_some());
    let command = "%7B%22id%22%3A1%2C%22connect%22%3A%7B%7D%7D";
    assert!(sse(&format!("/connection/sse?cf_connect={command}"), "HTTP/1.1").is_none());
    assert!(sse("/connection/sse?cf_connect=10,1,2", "HTTP/1.1").is_none());
    let post = b"POST /connection/sse HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(matches!(classify(post, origin_allowed), Some(First::Http)));
    let partial = b"GET /connection/sse HTTP/1.1\r\nHost: h\r\n";
    assert!(classify(partial, origin_allowed).is_none());
}
