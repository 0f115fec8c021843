//! The Centrifugo client protocol (protocol v2, as the official SDKs speak it),
//! in both of its formats: JSON (newline-separated commands and replies in
//! text frames) and Protobuf ([`protobuf`]: length-delimited messages in
//! binary frames). Commands in, replies and pushes out, error and disconnect
//! codes. Pure data and codec; the state machine lives in the gateway's session.

pub mod codes;
pub mod command;
pub mod protobuf;
pub mod reply;

pub use codes::{Disconnect, Error, Unsubscribe};
pub use command::{Command, Request};
pub use reply::Reply;

/// The format a connection speaks, chosen when it opens (the WebSocket
/// subprotocol `centrifuge-protobuf`, or `format=protobuf` /
/// `cf_protocol=protobuf` in the query, select Protobuf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON text.
    #[default]
    Json,
    /// Length-delimited Protobuf messages.
    Protobuf,
}
