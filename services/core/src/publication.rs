//! Publications and the stream positions that order them, plus the push frames
//! a gateway writes to sockets. A push frame is encoded once per channel and
//! shared by every local subscriber.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::trace::TraceParent;

/// Raw JSON as received, kept verbatim (the JSON protocol embeds `data` and `info` unencoded).
pub type RawJson = Box<RawValue>;

/// Who published or joined: shown in publications, presence and join/leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientInfo {
    /// User id from the connection token (empty for anonymous).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Connection id.
    pub client: String,
    /// The `info` claim of the connection token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_info: Option<RawJson>,
    /// The `info` claim of the subscription token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chan_info: Option<RawJson>,
}

/// One message in a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// Position in the channel's stream; 0 for channels without history.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The payload, raw JSON.
    pub data: RawJson,
    /// The publishing client, for client publications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Free-form string tags set by the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Milliseconds since the Unix epoch when the engine accepted it.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub time: i64,
    /// The sampled span that published it, for the delivering gateways' spans.
    /// Carried beside the publication between nodes, never to clients nor into history;
    /// boxed so that untraced publications (and history) pay 8 bytes, not 32.
    #[serde(skip)]
    pub trace: Option<Box<TraceParent>>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// A position in a channel's stream: the offset of the latest publication and the
/// stream's epoch (changes when history is lost, so stale offsets are detected).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the latest publication.
    #[serde(default)]
    pub offset: u64,
    /// Stream generation.
    #[serde(default)]
    pub epoch: String,
}

/// Removes raw newlines so that JSON payloads never break newline-delimited framing.
/// Outside strings JSON newlines are only whitespace; inside strings they are escaped.
pub fn sanitize(raw: RawJson) -> RawJson {
    if !raw.get().contains(['\n', '\r']) {
        return raw;
    }
    let compact: String = raw
        .get()
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r'))
        .collect();
    RawValue::from_string(compact).expect("removing whitespace keeps JSON valid")
}

/// Deepest nesting of arrays and objects publication data may have (`1` and
/// `{}` are 0 and 1 levels deep). Every transport re-reads what it delivers
/// within serde_json's recursion limit, so deeper data is refused where it
/// enters rather than accepted and then lost for some subscribers.
pub const MAX_DATA_DEPTH: usize = 64;

/// Whether `json` nests arrays and objects more than `max` levels deep: a
/// byte scan (brackets inside strings do not count), without recursion.
pub fn is_deeper_than(json: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[derive(Serialize)]
struct Frame<'a, T: Serialize> {
    push: Push<'a, T>,
}

#[derive(Serialize)]
struct Push<'a, T: Serialize> {
    channel: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
enum Body<'a> {
    #[serde(rename = "pub")]
    Publication(&'a Publication),
    #[serde(rename = "join")]
    Join { info: &'a ClientInfo },
    #[serde(rename = "leave")]
    Leave { info: &'a ClientInfo },
}

/// Encodes `{"push":{"channel":..,"pub":{..}}}`, the frame every subscriber of the channel gets.
pub fn encode_publication_push(channel: &str, publication: &Publication) -> Bytes {
    encode(channel, Body::Publication(publication))
}

/// The push inside a frame made by [`encode_publication_push`],
/// [`encode_join_push`] or [`encode_leave_push`] (`{"push":BODY}` → `BODY`),
/// as unidirectional transports send it.
pub fn push_body(frame: &Bytes) -> Bytes {
    frame.slice(PUSH_PREFIX.len()..frame.len() - 1)
}

/// What every channel push frame starts with.
const PUSH_PREFIX: &[u8] = b"{\"push\":";

/// Encodes a join push.
pub fn encode_join_push(channel: &str, info: &ClientInfo) -> Bytes {
    encode(channel, Body::Join { info })
}

/// Encodes a leave push.
pub fn encode_leave_push(channel: &str, info: &ClientInfo) -> Bytes {
    encode(channel, Body::Leave { info })
}

fn encode(channel: &str, body: Body<'_>) -> Bytes {
    let mut out = Vec::with_capacity(128);
    serde_json::to_writer(
        &mut out,
        &Frame {
            push: Push { channel, body },
        },
    )
    .expect("push frames always serialize");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_body_is_the_frame_without_its_wrapper() {
        let info = ClientInfo {
            user: "u".into(),
            client: "c".into(),
            conn_info: None,
            chan_info: None,
        };
        let frame = encode_join_push("c:1", &info);
        let body = push_body(&frame);
        assert_eq!([&b"{\"push\":"[..], &body[..], b"}"].concat(), &frame[..]);
        assert!(body.starts_with(b"{\"channel\":\"c:1\",\"join\":"));
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!is_deeper_than("1", 0));
        assert!(!is_deeper_than(r#"{"a":[1,{"b":2}]}"#, 3));
        assert!(is_deeper_than(r#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!is_deeper_than(r#"["[[[{{\"\\", "]"]"#, 1));
        assert!(is_deeper_than(&"[".repeat(100_000), MAX_DATA_DEPTH));
    }

    fn raw(s: &str) -> RawJson {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn push_frame_matches_the_protocol() {
        let p = Publication {
            offset: 15,
            data: raw(r#"{"text":"hi"}"#),
            info: None,
            tags: None,
            time: 0,
            trace: None,
        };
        let frame = encode_publication_push("chat:42", &p);
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            r#"{"push":{"channel":"chat:42","pub":{"offset":15,"data":{"text":"hi"}}}}"#
        );
        let info = ClientInfo {
            user: "42".into(),
            client: "c".into(),
            conn_info: None,
            chan_info: None,
        };
        assert_eq!(
            std::str::from_utf8(&encode_join_push("c:1", &info)).unwrap(),
            r#"{"push":{"channel":"c:1","join":{"info":{"user":"42","client":"c"}}}}"#
        );
    }

    #[test]
    fn sanitize_strips_raw_newlines_only() {
        let s = sanitize(raw("{\n\"a\": \"x\\ny\"\r\n}"));
        assert_eq!(s.get(), "{\"a\": \"x\\ny\"}");
        let v: serde_json::Value = serde_json::from_str(s.get()).unwrap();
        assert_eq!(v["a"], "x\ny");
    }
}
