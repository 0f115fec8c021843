//! What a connection is sent, typed: channel pushes that the hub encodes once
//! and shares between a channel's local subscribers, and the session's replies
//! and pushes of its own. Transports render frames for their wire: WebSocket
//! in the connection's format ([`Frame::encode`]: JSON text or
//! length-delimited Protobuf), SSE as events.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_core::protocol::reply::{self, Push, Reply};
use herald_core::protocol::{protobuf, Format};

/// One frame of a connection's queue.
#[derive(Debug)]
pub enum Frame {
    /// A publication, join or leave, shared by every local subscriber of its channel.
    Channel(Arc<ChannelPush>),
    /// The reply to one of the client's commands.
    Reply(Box<Reply>),
    /// A push of the session's own.
    Push(Box<Push>),
    /// The server's ping.
    Ping,
    /// A reply or push already encoded as JSON (see [`Frame::encode_json`]).
    Json(Bytes),
    /// A reply or push already encoded as a length-delimited Protobuf `Reply`.
    Protobuf(Bytes),
}

/// A channel push as the hub fans it out.
#[derive(Debug)]
pub struct ChannelPush {
    /// The channel.
    pub channel: Arc<str>,
    /// The publication's offset; 0 for a join or leave.
    pub offset: u64,
    /// The publication's engine time (ms since the Unix epoch), for the
    /// publish-to-write latency; `None` for a join or leave.
    pub time: Option<i64>,
    /// `{"push":{..}}`, encoded once for every subscriber.
    pub json: Bytes,
    /// The Protobuf encoding, made from `json` by the first Protobuf
    /// connection that writes the push (JSON-only channels never make it).
    protobuf: OnceLock<Bytes>,
}

impl ChannelPush {
    /// A push encoded as JSON.
    pub fn new(channel: Arc<str>, offset: u64, time: Option<i64>, json: Bytes) -> ChannelPush {
        ChannelPush {
            channel,
            offset,
            time,
            json,
            protobuf: OnceLock::new(),
        }
    }

    /// The push as a length-delimited Protobuf `Reply`, encoded on first use.
    pub fn protobuf(&self) -> &Bytes {
        self.protobuf
            .get_or_init(|| protobuf::channel_push_from_json(&self.json))
    }
}

impl Frame {
    /// Encodes a typed reply or push as JSON, in place; other frames are JSON already.
    pub fn encode_json(&mut self) {
        self.encode(Format::Json);
    }

    /// Encodes a typed reply or push in `format`, in place; other frames
    /// are encoded already (a connection's frames all have its format).
    pub fn encode(&mut self, format: Format) {
        let encoded = match (&*self, format) {
            (Frame::Reply(reply), Format::Json) => Frame::Json(reply.encode()),
            (Frame::Push(push), Format::Json) => Frame::Json(push.encode()),
            (Frame::Reply(reply), Format::Protobuf) => {
                Frame::Protobuf(protobuf::encode_reply(reply))
            }
            (Frame::Push(push), Format::Protobuf) => Frame::Protobuf(protobuf::encode_push(push)),
            _ => return,
        };
        *self = encoded;
    }

    /// The frame as JSON; empty for a typed reply or push not encoded yet
    /// (writers encode a frame before they measure or write it).
    pub fn json(&self) -> &[u8] {
        self.bytes(Format::Json)
    }

    /// The frame's bytes in `format`; empty for a typed reply or push not
    /// encoded yet, or one encoded in the other format.
    pub fn bytes(&self, format: Format) -> &[u8] {
        match (self, format) {
            (Frame::Channel(push), Format::Json) => &push.json,
            (Frame::Channel(push), Format::Protobuf) => push.protobuf(),
            (Frame::Json(json), Format::Json) => json,
            (Frame::Protobuf(bytes), Format::Protobuf) => bytes,
            (Frame::Ping, Format::Json) => reply::PING,
            (Frame::Ping, Format::Protobuf) => protobuf::PING,
            _ => &[],
        }
    }

    /// The engine time of a publication frame.
    pub fn publication_time(&self) -> Option<i64> {
        match self {
            Frame::Channel(push) => push.time,
            _ => None,
        }
    }

    /// Whether this is the reply to a client's command.
    pub fn is_reply(&self) -> bool {
        matches!(self, Frame::Reply(_))
    }
}

impl From<Reply> for Frame {
    fn from(reply: Reply) -> Frame {
        Frame::Reply(Box::new(reply))
    }
}

impl From<Push> for Frame {
    fn from(push: Push) -> Frame {
        Frame::Push(Box::new(push))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::protocol::reply::{Body, Empty};
    use herald_core::protocol::Unsubscribe;

    #[test]
    fn typed_frames_encode_as_the_protocol_json() {
        let mut frame = Frame::from(Reply {
            id: 3,
            body: Body::Publish(Empty {}),
        });
        assert!(frame.json().is_empty(), "nothing before encoding");
        frame.encode_json();
        assert_eq!(frame.json(), br#"{"id":3,"publish":{}}"#);
        let mut push = Frame::from(Push::Unsubscribe {
            channel: "c".into(),
            why: Unsubscribe::Server,
        });
        push.encode_json();
        assert!(push
            .json()
            .starts_with(br#"{"push":{"channel":"c","unsubscribe""#));
        assert_eq!(Frame::Ping.json(), b"{}");
    }

    #[test]
    fn protobuf_frames_are_length_delimited_and_channel_pushes_encode_once() {
        let mut frame = Frame::from(Reply {
            id: 3,
            body: Body::Publish(Empty {}),
        });
        frame.encode(Format::Protobuf);
        assert!(frame.json().is_empty(), "not JSON");
        let encoded = frame.bytes(Format::Protobuf);
        assert_eq!(usize::from(encoded[0]), encoded.len() - 1);
        assert_eq!(Frame::Ping.bytes(Format::Protobuf), [0]);
        let push = Arc::new(ChannelPush::new(
            "c".into(),
            1,
            None,
            Bytes::from_static(br#"{"push":{"channel":"c","pub":{"offset":1,"data":{}}}}"#),
        ));
        let first = push.protobuf().as_ptr();
        assert_eq!(push.protobuf().as_ptr(), first, "encoded once, then shared");
    }

    #[test]
    fn a_frame_is_no_larger_than_a_shared_buffer() {
        assert!(std::mem::size_of::<Frame>() <= std::mem::size_of::<Bytes>() + 8);
    }
}
