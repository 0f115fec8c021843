//! W3C trace context (`traceparent`) as it travels with a publication from the
//! node that published it to every gateway that delivers it, and the bridge
//! between `tracing` spans and OpenTelemetry contexts. Whether spans are
//! exported is the binary's choice: without its layer every span of
//! [`TARGET`] is disabled, nothing is read here and nothing is carried.

use std::fmt;
use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use serde::de::{self, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of Herald's exported spans (`api.*`,
/// `engine.publish`, `gateway.deliver`), all at level TRACE: plain logs do
/// not show them unless asked to, and the exporter's layer selects this target.
pub const TARGET: &str = "herald::otel";

/// A sampled span's identity as the W3C `traceparent` header spells it
/// (`00-<trace id>-<span id>-<flags>`), kept in 25 bytes without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// The length of a version-00 `traceparent`.
    pub const LEN: usize = 55;

    /// Parses a `traceparent` header (W3C Trace Context, level 1): `None`
    /// for anything malformed, an all-zero id or the forbidden version `ff`.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let s = header.trim().as_bytes();
        let version = hex::<1>(s.get(0..2)?)?[0];
        // A later version may append fields after a dash; version 00 may not.
        let fits = s.len() == Self::LEN || (version != 0 && s.get(Self::LEN) == Some(&b'-'));
        if version == 0xff || !fits || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        let parent = TraceParent {
            trace_id: hex::<16>(&s[3..35])?,
            span_id: hex::<8>(&s[36..52])?,
            flags: hex::<1>(&s[53..55])?[0],
        };
        let zero = parent.trace_id == [0; 16] || parent.span_id == [0; 8];
        (!zero).then_some(parent)
    }

    /// Whether the span was sampled (the `sampled` flag).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        lower_hex(&self.trace_id)
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        lower_hex(&self.span_id)
    }

    /// The context of `span` when it is exported and sampled; `None`
    /// otherwise (so an unsampled publication carries nothing).
    pub fn of(span: &Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let context = cx.span().span_context().clone();
        (context.is_valid() && context.is_sampled()).then(|| TraceParent {
            trace_id: context.trace_id().to_bytes(),
            span_id: context.span_id().to_bytes(),
            flags: TraceFlags::SAMPLED.to_u8(),
        })
    }

    /// Makes this (remote) span the parent of `span`, which must not have
    /// been entered yet; nothing happens when `span` is not exported.
    pub fn adopt(&self, span: &Span) {
        self.adopt_with_state(span, TraceState::NONE);
    }

    fn adopt_with_state(&self, span: &Span, state: TraceState) {
        if span.is_disabled() {
            return;
        }
        let remote = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            state,
        );
        // Fails only when no OpenTelemetry layer is installed: then nothing is exported anyway.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

/// Continues the trace of an incoming request: its `traceparent` (with its
/// `tracestate`) becomes the parent of `span`; without a valid one `span`
/// starts a new trace. Free when `span` is not exported.
pub fn continue_remote(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    if let Some(parent) = traceparent.and_then(TraceParent::parse) {
        let state = tracestate
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        parent.adopt_with_state(span, state);
    }
}

fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// W3C allows lowercase hex digits only.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads an optional `traceparent` string field leniently: a malformed one
/// is `None` (it costs a delivery its span, never the publication itself).
/// For `#[serde(default, deserialize_with = "...")]`.
pub fn deserialize_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<TraceParent>, D::Error> {
    struct Header;
    impl<'de> Visitor<'de> for Header {
        type Value = Option<TraceParent>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a W3C traceparent or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(TraceParent::parse(v))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Header)
        }
    }
    deserializer.deserialize_option(Header)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let p = TraceParent::parse(EXAMPLE).unwrap();
        assert!(p.is_sampled());
        assert_eq!(p.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id(), "00f067aa0ba902b7");
        assert_eq!(p.to_string(), EXAMPLE);
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{EXAMPLE}\""));
        #[derive(serde::Deserialize)]
        struct Carrier {
            #[serde(default, deserialize_with = "deserialize_lenient")]
            t: Option<TraceParent>,
        }
        let read = |json: &str| serde_json::from_str::<Carrier>(json).unwrap().t;
        assert_eq!(read(&format!(r#"{{"t":"{EXAMPLE}"}}"#)), Some(p));
        assert_eq!(read(r#"{"t":"nope"}"#), None);
        assert_eq!(read(r#"{"t":null}"#), None);
        assert_eq!(read("{}"), None);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn refuses_what_w3c_refuses() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ];
        for header in bad {
            assert_eq!(TraceParent::parse(header), None, "{header:?}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later";
        assert!(TraceParent::parse(future).is_some());
    }

    #[test]
    fn without_an_exporter_nothing_is_read_or_carried() {
        let span = tracing::trace_span!(target: TARGET, "engine.publish");
        assert!(span.is_disabled());
        continue_remote(&span, Some(EXAMPLE), None);
        TraceParent::parse(EXAMPLE).unwrap().adopt(&span);
        assert_eq!(TraceParent::of(&span), None);
    }
}
