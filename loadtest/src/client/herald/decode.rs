//! Decoding what a Herald server sends once a connection is set up: `\n`-batched WebSocket
//! frames (publication and disconnect pushes, pings) and the data of Server-Sent Events. The
//! handshake that comes before is `client::herald`'s.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::client::conn::{Event, Payload, Replayed};

#[derive(Deserialize)]
struct Frame {
    push: Option<Push>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "pub")]
    publication: Option<Publication>,
    disconnect: Option<Value>,
}

/// A publication in a push or in a recovering subscribe reply.
#[derive(Deserialize)]
pub struct Publication {
    /// What the load generator published.
    pub data: Payload,
    /// Its offset in the channel's stream.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Decodes one frame: publications, pings (`{}`) and disconnect pushes.
pub fn decode(text: &str, out: &mut Vec<Event>) {
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if line == "{}" {
            out.push(Event::Ping);
            continue;
        }
        let Ok(Frame { push: Some(push) }) = serde_json::from_str::<Frame>(line) else {
            continue;
        };
        if let Some(p) = push.publication {
            out.push(Event::Pub(p.data, p.offset));
        } else if let Some(d) = push.disconnect {
            out.push(Event::Closed(code_of(&d), format!("disconnect push {d}")));
        }
    }
}

#[derive(Deserialize)]
struct SseEvent<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(rename = "pub")]
    publication: Option<SsePublication>,
    disconnect: Option<Value>,
}

#[derive(Deserialize)]
struct SsePublication {
    data: Payload,
    #[serde(default)]
    offset: u64,
}

/// Decodes the data of one Server-Sent Event: publications (except a replay at or below
/// `replayed`) and disconnects. Pings are comments, which the transport already skipped.
pub fn decode_sse(text: &str, replayed: Option<&Replayed>, out: &mut Vec<Event>) {
    let Ok(event) = serde_json::from_str::<SseEvent<'_>>(text) else {
        return;
    };
    if let Some(p) = event.publication {
        let replay = replayed
            .is_some_and(|r| p.offset <= r.offset && event.channel.as_deref() == Some(&*r.channel));
        if !replay {
            out.push(Event::Pub(p.data, (p.offset > 0).then_some(p.offset)));
        }
    } else if let Some(d) = event.disconnect {
        out.push(Event::Closed(code_of(&d), format!("disconnect event {d}")));
    }
}

/// The `code` of a disconnect object.
fn code_of(disconnect: &Value) -> Option<u16> {
    disconnect
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sse_events_skip_the_subscribe_replay() {
        let replayed = Replayed {
            channel: Arc::from("stock:LOAD"),
            offset: 9,
        };
        let mut out = Vec::new();
        for text in [
            r#"{"channel":"stock:LOAD","pub":{"offset":9,"data":{"seq":1,"ts":2}}}"#,
            r#"{"channel":"stock:LOAD","pub":{"offset":10,"data":{"seq":3,"ts":4}}}"#,
            r#"{"channel":"user:lt-1","pub":{"offset":2,"data":{"seq":5,"ts":6}}}"#,
            r#"{"channel":"stock:LOAD","subscribe":{"offset":9}}"#,
            r#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#,
        ] {
            decode_sse(text, Some(&replayed), &mut out);
        }
        assert_eq!(out[0], Event::Pub(Payload { seq: 3, ts: 4 }, Some(10)));
        assert_eq!(out[1], Event::Pub(Payload { seq: 5, ts: 6 }, Some(2)));
        assert!(matches!(&out[2], Event::Closed(Some(3001), r) if r.contains("shutdown")));
        assert_eq!(out.len(), 3);
        out.clear();
        decode_sse(
            r#"{"channel":"stock:LOAD","pub":{"offset":9,"data":{"seq":1,"ts":2}}}"#,
            None,
            &mut out,
        );
        assert_eq!(
            out.len(),
            1,
            "without a replayed position nothing is skipped"
        );
    }
    #[test]
    fn disconnect_pushes_carry_their_code() {
        let mut out = Vec::new();
        decode(
            r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#,
            &mut out,
        );
        assert!(matches!(&out[0], Event::Closed(Some(3001), _)));
    }
}
