//! The Protobuf format of the client protocol: the schema's types
//! ([`proto`], generated from `proto/client.proto`), commands decoded into the
//! same typed requests as JSON commands ([`decode`]), and replies and pushes
//! encoded from the same typed values ([`encode`]). Every message on the wire
//! is length-delimited (a varint length, then the message); `data` and
//! `info` fields carry the payload's bytes, JSON text in Herald.

pub mod decode;
pub mod encode;

pub use decode::{count_messages, emulation_request, parse_frame, DecodeError};
pub use encode::{channel_push_from_json, disconnect_push, encode_push, encode_reply, PING};

/// Types generated from `proto/client.proto` (package `centrifugal.centrifuge.protocol`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(
        env!("OUT_DIR"),
        "/centrifugal.centrifuge.protocol.rs"
    ));
}
