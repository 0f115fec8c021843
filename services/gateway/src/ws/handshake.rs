//! The server side of the WebSocket opening handshake (RFC 6455 section 4.2):
//! checks an upgrade request's headers and builds the `101` answer. Shared by
//! the listener, which answers upgrade requests itself, and the axum route,
//! which serves the rest (requests after an earlier one on a kept-alive
//! connection, and refusals). It also picks the connection's format, as
//! Centrifugo does: the subprotocol `centrifuge-protobuf`, or
//! `format=protobuf` / `cf_protocol=protobuf` in the query, select Protobuf.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::protocol::Format;

/// The JSON subprotocol; echoed when a client asks for it.
pub const SUBPROTOCOL: &str = "centrifuge-json";

/// The Protobuf subprotocol; echoed when a client asks for it.
pub const SUBPROTOCOL_PROTOBUF: &str = "centrifuge-protobuf";

/// An upgrade request that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    /// `Sec-WebSocket-Accept` for the request's key.
    accept: String,
    /// The subprotocol to answer with: the first one the client offered that Herald speaks.
    subprotocol: Option<&'static str>,
    /// The connection's format.
    format: Format,
}

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A browser `Origin` not in `auth.allowed_origins`.
    Origin,
    /// `Connection: upgrade` or `Upgrade: websocket` is missing.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    Version,
    /// `Sec-WebSocket-Key` is missing.
    NoKey,
}

/// A header value as text; not UTF-8 becomes a value that matches nothing.
fn lossy(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or("\u{fffd}")
}

/// Checks the headers of a `GET` upgrade request (names in any case);
/// `origin_allowed` judges its `Origin` against its `Host`
/// ([`crate::Gateway::is_origin_allowed`]); `query` is the request target's
/// query string, if any.
pub fn check<'a>(
    origin_allowed: impl FnOnce(Option<&str>, Option<&str>) -> bool,
    query: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Accepted, Refusal> {
    let (mut origin, mut host, mut version, mut key) = (None, None, None, None);
    let (mut connection_upgrade, mut upgrade_websocket) = (false, false);
    let mut subprotocol = None;
    for (name, value) in headers {
        let is = |h: &header::HeaderName| name.eq_ignore_ascii_case(h.as_str());
        if is(&header::ORIGIN) {
            origin = origin.or(Some(value));
        } else if is(&header::HOST) {
            host = host.or(Some(value));
        } else if is(&header::CONNECTION) {
            connection_upgrade |= lists(value, "upgrade");
        } else if is(&header::UPGRADE) {
            upgrade_websocket |= lists(value, "websocket");
        } else if is(&header::SEC_WEBSOCKET_VERSION) {
            version = version.or(Some(value));
        } else if is(&header::SEC_WEBSOCKET_KEY) {
            key = key.or(Some(value));
        } else if is(&header::SEC_WEBSOCKET_PROTOCOL) {
            subprotocol = subprotocol.or_else(|| first_spoken(value));
        }
    }
    if !origin_allowed(origin.map(lossy), host.map(lossy)) {
        return Err(Refusal::Origin);
    }
    if !connection_upgrade || !upgrade_websocket {
        return Err(Refusal::NotUpgrade);
    }
    if version != Some(b"13") {
        return Err(Refusal::Version);
    }
    let key = key.ok_or(Refusal::NoKey)?;
    let protobuf = subprotocol == Some(SUBPROTOCOL_PROTOBUF) || query.is_some_and(asks_protobuf);
    Ok(Accepted {
        accept: tungstenite::handshake::derive_accept_key(key),
        subprotocol,
        format: if protobuf {
            Format::Protobuf
        } else {
            Format::Json
        },
    })
}

/// The first subprotocol of a comma-separated list that Herald speaks.
fn first_spoken(value: &[u8]) -> Option<&'static str> {
    value.split(|&b| b == b',').find_map(|t| {
        [SUBPROTOCOL, SUBPROTOCOL_PROTOBUF]
            .into_iter()
            .find(|p| t.trim_ascii().eq_ignore_ascii_case(p.as_bytes()))
    })
}

/// Whether a query string asks for Protobuf (`format=protobuf` or `cf_protocol=protobuf`).
fn asks_protobuf(query: &str) -> bool {
    query.split('&').any(|pair| {
        matches!(
            pair.split_once('='),
            Some(("format" | "cf_protocol", "protobuf"))
        )
    })
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl Accepted {
    /// The whole `101` response, for a socket the listener answers itself.
    pub fn response_head(&self) -> String {
        let protocol = self
            .subprotocol
            .map(|p| format!("sec-websocket-protocol: {p}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-accept: {}\r\n{protocol}\r\n",
            self.accept
        )
    }

    /// The format the connection speaks.
    pub fn format(&self) -> Format {
        self.format
    }
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let out = response.headers_mut();
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&self.accept) {
            out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = self.subprotocol {
            out.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        response
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Origin => (StatusCode::FORBIDDEN, "origin not allowed").into_response(),
            Refusal::NotUpgrade => {
                (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response()
            }
            Refusal::Version => {
                let mut response = (
                    StatusCode::UPGRADE_REQUIRED,
                    "WebSocket version 13 required",
                )
                    .into_response();
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                response
            }
            Refusal::NoKey => {
                (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key").into_response()
            }
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &[(&'static str, &'static [u8])]) -> Vec<(&'static str, &'static [u8])> {
        let mut h: Vec<(&str, &[u8])> = vec![
            ("Host", b"x"),
            ("Connection", b"keep-alive, Upgrade"),
            ("upgrade", b"WebSocket"),
            ("Sec-WebSocket-Version", b"13"),
            ("sec-websocket-key", KEY),
        ];
        h.extend_from_slice(extra);
        h
    }

    fn without(name: &str) -> Vec<(&'static str, &'static [u8])> {
        request(&[])
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .collect()
    }

    #[test]
    fn accepts_the_rfc_example_and_answers_its_key() {
        let accepted = check(|_, _| true, None, request(&[])).unwrap();
        let head = accepted.response_head();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!head.contains("sec-websocket-protocol"));
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn echoes_the_subprotocol_only_when_offered() {
        let offered = request(&[("Sec-WebSocket-Protocol", b"other, centrifuge-json")]);
        let head = check(|_, _| true, None, offered).unwrap().response_head();
        assert!(head.contains("sec-websocket-protocol: centrifuge-json\r\n"));
        let other = request(&[("Sec-WebSocket-Protocol", b"other")]);
        assert_eq!(check(|_, _| true, None, other).unwrap().subprotocol, None);
        assert_eq!(
            check(|_, _| true, None, request(&[])).unwrap().format(),
            Format::Json
        );
    }

    #[test]
    fn protobuf_by_subprotocol_or_query() {
        let offered = request(&[("Sec-WebSocket-Protocol", b"centrifuge-protobuf")]);
        let accepted = check(|_, _| true, None, offered).unwrap();
        assert_eq!(accepted.format(), Format::Protobuf);
        assert!(accepted
            .response_head()
            .contains("sec-websocket-protocol: centrifuge-protobuf\r\n"));
        let first = request(&[(
            "Sec-WebSocket-Protocol",
            b"centrifuge-json, centrifuge-protobuf",
        )]);
        assert_eq!(
            check(|_, _| true, None, first).unwrap().format(),
            Format::Json
        );
        for query in ["format=protobuf", "a=1&cf_protocol=protobuf"] {
            let accepted = check(|_, _| true, Some(query), request(&[])).unwrap();
            assert_eq!(accepted.format(), Format::Protobuf, "{query}");
            assert_eq!(accepted.subprotocol, None);
        }
        let json = check(|_, _| true, Some("format=json&x=protobuf"), request(&[])).unwrap();
        assert_eq!(json.format(), Format::Json);
    }

    #[test]
    fn refusals() {
        let evil = request(&[("Origin", b"https://evil.example")]);
        let judge = |o: Option<&str>, _: Option<&str>| o != Some("https://evil.example");
        assert_eq!(check(judge, None, evil), Err(Refusal::Origin));
        assert_eq!(
            check(|_, _| true, None, without("connection")),
            Err(Refusal::NotUpgrade)
        );
        assert_eq!(
            check(|_, _| true, None, without("upgrade")),
            Err(Refusal::NotUpgrade)
        );
        assert_eq!(
            check(|_, _| true, None, without("sec-websocket-version")),
            Err(Refusal::Version)
        );
        let v8 = request(&[]).into_iter().map(|(n, v)| {
            (
                n,
                if n == "Sec-WebSocket-Version" {
                    b"8".as_slice()
                } else {
                    v
                },
            )
        });
        assert_eq!(check(|_, _| true, None, v8), Err(Refusal::Version));
        assert_eq!(
            check(|_, _| true, None, without("sec-websocket-key")),
            Err(Refusal::NoKey)
        );
    }
}
