//! The pub/sub message format: a small JSON envelope around a publication (with
//! its offset and epoch, filled in by the publish script, and the publishing
//! span's `traceparent` when it was sampled), a join or a leave. History
//! stream entries hold the bare publication JSON; the offset is the entry id.

use serde::{Deserialize, Serialize};

use crate::publication::{ClientInfo, Publication};
use crate::trace::{self, TraceParent};

/// A decoded pub/sub message of a channel.
#[derive(Debug)]
pub(super) enum Message {
    /// A publication; `offset` 0 (and no epoch) for channels without history.
    Publication {
        /// Its position in the stream, already set in `publication.offset`.
        offset: u64,
        /// The stream's epoch.
        epoch: String,
        /// The publication.
        publication: Publication,
    },
    /// Someone joined.
    Join(ClientInfo),
    /// Someone left.
    Leave(ClientInfo),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    o: u64,
    #[serde(default)]
    e: String,
    p: Option<Publication>,
    j: Option<ClientInfo>,
    l: Option<ClientInfo>,
    #[serde(default, deserialize_with = "trace::deserialize_lenient")]
    t: Option<TraceParent>,
}

#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<&'a Publication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    j: Option<&'a ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<&'a ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a TraceParent>,
}

/// The publication as stored in the stream and embedded by the publish script
/// (`{"o":N,"e":"E","p":<this>}`): its offset is left out.
pub(super) fn encode_publication(publication: &Publication) -> String {
    serde_json::to_string(publication).expect("publications always serialize")
}

/// A publication of a channel without history: `{"p":{...}}`, plus
/// `"t":"<traceparent>"` when it carries a trace context.
pub(super) fn encode_plain(publication: &Publication) -> String {
    encode(Out {
        p: Some(publication),
        j: None,
        l: None,
        t: publication.trace.as_deref(),
    })
}

/// The publish script's `traceparent` argument: empty for none.
pub(super) fn trace_arg(publication: &Publication) -> String {
    publication
        .trace
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A join (`{"j":info}`) or a leave (`{"l":info}`).
pub(super) fn encode_presence_event(info: &ClientInfo, join: bool) -> String {
    if join {
        encode(Out {
            p: None,
            j: Some(info),
            l: None,
            t: None,
        })
    } else {
        encode(Out {
            p: None,
            j: None,
            l: Some(info),
            t: None,
        })
    }
}

fn encode(out: Out<'_>) -> String {
    serde_json::to_string(&out).expect("envelopes always serialize")
}

/// Decodes a pub/sub message.
pub(super) fn decode(payload: &[u8]) -> Result<Message, serde_json::Error> {
    let env: Envelope = serde_json::from_slice(payload)?;
    if let Some(mut publication) = env.p {
        publication.offset = env.o;
        publication.trace = env.t.map(Box::new);
        return Ok(Message::Publication {
            offset: env.o,
            epoch: env.e,
            publication,
        });
    }
    match (env.j, env.l) {
        (Some(info), _) => Ok(Message::Join(info)),
        (None, Some(info)) => Ok(Message::Leave(info)),
        (None, None) => Err(serde::de::Error::custom("empty envelope")),
    }
}

/// Decodes a stream entry's publication, setting its offset.
pub(super) fn decode_stored(offset: u64, payload: &[u8]) -> Result<Publication, serde_json::Error> {
    let mut publication: Publication = serde_json::from_slice(payload)?;
    publication.offset = offset;
    Ok(publication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn publication() -> Publication {
        Publication {
            offset: 0,
            data: RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
            info: None,
            tags: None,
            time: 5,
            trace: None,
        }
    }

    #[test]
    fn script_built_envelope_decodes() {
        let body = encode_publication(&publication());
        assert_eq!(body, r#"{"data":{"a":1},"time":5}"#);
        let wire = format!(r#"{{"o":7,"e":"ab","p":{body}}}"#);
        match decode(wire.as_bytes()).unwrap() {
            Message::Publication {
                offset,
                epoch,
                publication,
            } => {
                assert_eq!((offset, epoch.as_str(), publication.offset), (7, "ab", 7));
                assert_eq!(publication.data.get(), r#"{"a":1}"#);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decode_stored(3, body.as_bytes()).unwrap().offset, 3);
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced(message: &str) -> Option<TraceParent> {
        match decode(message.as_bytes()).unwrap() {
            Message::Publication { publication, .. } => publication.trace.map(|t| *t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_trace_context_travels_beside_the_publication_only() {
        let mut p = publication();
        assert!(!encode_plain(&p).contains("\"t\""));
        assert_eq!(trace_arg(&p), "");
        p.trace = TraceParent::parse(TRACEPARENT).map(Box::new);
        let plain = encode_plain(&p);
        assert_eq!(
            plain,
            format!(r#"{{"p":{{"data":{{"a":1}},"time":5}},"t":"{TRACEPARENT}"}}"#)
        );
        assert_eq!(traced(&plain).as_ref(), p.trace.as_deref());
        assert_eq!(trace_arg(&p), TRACEPARENT);
        assert_eq!(encode_publication(&p), r#"{"data":{"a":1},"time":5}"#);
        let scripted = format!(r#"{{"o":7,"e":"ab","p":{{"data":1}},"t":"{TRACEPARENT}"}}"#);
        assert_eq!(traced(&scripted).as_ref(), p.trace.as_deref());
        assert_eq!(
            traced(r#"{"o":7,"e":"ab","p":{"data":1},"t":"junk"}"#),
            None
        );
    }

    #[test]
    fn plain_join_and_leave_round_trip() {
        let plain = encode_plain(&publication());
        assert!(matches!(
            decode(plain.as_bytes()).unwrap(),
            Message::Publication { offset: 0, .. }
        ));
        let info = ClientInfo {
            user: "u".into(),
            client: "c".into(),
            conn_info: None,
            chan_info: None,
        };
        let join = encode_presence_event(&info, true);
        assert!(matches!(decode(join.as_bytes()).unwrap(), Message::Join(i) if i.client == "c"));
        let leave = encode_presence_event(&info, false);
        assert!(matches!(decode(leave.as_bytes()).unwrap(), Message::Leave(i) if i.user == "u"));
        assert!(decode(b"{}").is_err());
        assert!(decode(b"nope").is_err());
    }
}
