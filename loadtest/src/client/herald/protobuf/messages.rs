//! The few messages of the Centrifugo Protobuf client protocol the handshake writes or reads,
//! declared with their published field numbers (Herald's `services/core/proto/client.proto`).
//! Fields left out here are skipped when decoding.

use std::collections::HashMap;

/// From client to server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    /// Matches the reply.
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// The connect request.
    #[prost(message, optional, tag = "4")]
    pub connect: Option<ConnectRequest>,
    /// A subscribe request.
    #[prost(message, optional, tag = "5")]
    pub subscribe: Option<SubscribeRequest>,
}

/// `connect`: the token and the client's name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectRequest {
    /// Connection JWT.
    #[prost(string, tag = "1")]
    pub token: String,
    /// Client name.
    #[prost(string, tag = "4")]
    pub name: String,
}

/// `subscribe`, with recovery from a stream position when `recover` is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    pub channel: String,
    /// Recover from `epoch` and `offset`.
    #[prost(bool, tag = "3")]
    pub recover: bool,
    /// Epoch of the position to recover from.
    #[prost(string, tag = "6")]
    pub epoch: String,
    /// Offset of the last publication seen.
    #[prost(uint64, tag = "7")]
    pub offset: u64,
}

/// From server to client: the reply to command `id` (id 0: a push; empty: a ping).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    /// The command answered.
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// Why the command failed.
    #[prost(message, optional, tag = "2")]
    pub error: Option<Error>,
    /// The connect result.
    #[prost(message, optional, tag = "5")]
    pub connect: Option<ConnectResult>,
    /// A subscribe result.
    #[prost(message, optional, tag = "6")]
    pub subscribe: Option<SubscribeResult>,
}

/// A command's failure.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    /// Centrifugo error code.
    #[prost(uint32, tag = "1")]
    pub code: u32,
    /// Its message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The connect result: server-side subscriptions and whether pings want a pong.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectResult {
    /// Subscriptions the server made on connect, by channel.
    #[prost(map = "string, message", tag = "6")]
    pub subs: HashMap<String, SubscribeResult>,
    /// Server pings must be answered.
    #[prost(bool, tag = "8")]
    pub pong: bool,
}

/// A subscribe result: the stream position and what a recovery returned.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeResult {
    /// The stream's epoch.
    #[prost(string, tag = "6")]
    pub epoch: String,
    /// Recovered publications (or the latest one some namespaces replay).
    #[prost(message, repeated, tag = "7")]
    pub publications: Vec<Publication>,
    /// Everything since the position asked for was recovered.
    #[prost(bool, tag = "8")]
    pub recovered: bool,
    /// The stream's offset.
    #[prost(uint64, tag = "9")]
    pub offset: u64,
    /// A recovery was asked for.
    #[prost(bool, tag = "12")]
    pub was_recovering: bool,
}

/// A publication: the publisher's bytes and its offset.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Publication {
    /// The payload as published (JSON text from the load generator).
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
    /// Offset in the channel's stream.
    #[prost(uint64, tag = "6")]
    pub offset: u64,
}
