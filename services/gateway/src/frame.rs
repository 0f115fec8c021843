//! What a connection is sent, typed: channel pushes that the hub encodes once
//! and shares between a channel's local subscribers, and the session's replies
//! and pushes of its own. Transports render frames for their wire: WebSocket
//! as JSON text ([`Frame::encode_json`]), SSE as events.

use std::sync::Arc;

use bytes::Bytes;
use herald_core::protocol::reply::{self, Push, Reply};

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
}

impl Frame {
    /// Encodes a typed reply or push as JSON, in place; other frames are JSON already.
    pub fn encode_json(&mut self) {
        match self {
            Frame::Reply(reply) => *self = Frame::Json(reply.encode()),
            Frame::Push(push) => *self = Frame::Json(push.encode()),
            Frame::Channel(_) | Frame::Ping | Frame::Json(_) => {}
        }
    }

    /// The frame as JSON; empty for a typed reply or push not encoded yet
    /// (writers encode a frame before they measure or write it).
    pub fn json(&self) -> &[u8] {
        match self {
            Frame::Channel(push) => &push.json,
            Frame::Json(json) => json,
            Frame::Ping => reply::PING,
            Frame::Reply(_) | Frame::Push(_) => &[],
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
    fn a_frame_is_no_larger_than_a_shared_buffer() {
        assert!(std::mem::size_of::<Frame>() <= std::mem::size_of::<Bytes>() + 8);
    }
}
