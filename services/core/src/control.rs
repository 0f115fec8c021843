//! Cluster-wide commands (server API actions that must reach whichever node
//! holds a user's connections), client commands of the bidirectional
//! emulation on their way to the node holding the session, and node
//! descriptions for `/api/info`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A command every gateway applies to its local connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Command {
    /// Close the user's connections (or one of them).
    Disconnect {
        /// User id.
        user: String,
        /// Only this connection id, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Subscribe the user's connections to a channel server-side.
    Subscribe {
        /// User id.
        user: String,
        /// Channel name.
        channel: String,
        /// Only this connection id, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Unsubscribe the user's connections from a channel.
    Unsubscribe {
        /// User id.
        user: String,
        /// Channel name.
        channel: String,
        /// Only this connection id, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Extend or end the user's connections' lifetime.
    Refresh {
        /// User id.
        user: String,
        /// Only this connection id, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// Close the connections as expired now.
        #[serde(default)]
        expired: bool,
        /// New expiry, seconds since the epoch (0: never).
        #[serde(default)]
        expire_at: i64,
    },
}

impl Command {
    /// The user the command is about.
    pub fn user(&self) -> &str {
        match self {
            Command::Disconnect { user, .. }
            | Command::Subscribe { user, .. }
            | Command::Unsubscribe { user, .. }
            | Command::Refresh { user, .. } => user,
        }
    }

    /// The connection the command is limited to, if any.
    pub fn client(&self) -> Option<&str> {
        match self {
            Command::Disconnect { client, .. }
            | Command::Subscribe { client, .. }
            | Command::Unsubscribe { client, .. }
            | Command::Refresh { client, .. } => client.as_deref(),
        }
    }
}

/// Client commands that arrived on one node's `/emulation` endpoint for a
/// session held by another node (sent to that node alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EmulationMessage", into = "EmulationMessage")]
pub struct Emulation {
    /// The session id from the connect reply.
    pub session: String,
    /// The client's frame.
    pub data: ClientFrame,
}

/// One frame of a client's commands, in the format of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Newline-separated JSON commands.
    Json(String),
    /// Length-delimited Protobuf `Command`s.
    Protobuf(Bytes),
}

impl ClientFrame {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        match self {
            ClientFrame::Json(text) => text.len(),
            ClientFrame::Protobuf(bytes) => bytes.len(),
        }
    }

    /// Whether the frame holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`Emulation`] on the node channel: JSON commands in `data` (as before
/// Protobuf was forwarded, so a JSON request reads the same on every
/// version), Protobuf ones base64-encoded in `protobuf`.
#[derive(Serialize, Deserialize)]
struct EmulationMessage {
    session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protobuf: Option<String>,
}

impl TryFrom<EmulationMessage> for Emulation {
    type Error = String;

    fn try_from(m: EmulationMessage) -> Result<Emulation, String> {
        let data = match (m.data, m.protobuf) {
            (Some(json), None) => ClientFrame::Json(json),
            (None, Some(encoded)) => {
                let bytes = BASE64.decode(encoded).map_err(|e| e.to_string())?;
                ClientFrame::Protobuf(Bytes::from(bytes))
            }
            _ => return Err("exactly one of data and protobuf expected".to_owned()),
        };
        Ok(Emulation {
            session: m.session,
            data,
        })
    }
}

impl From<Emulation> for EmulationMessage {
    fn from(e: Emulation) -> EmulationMessage {
        let (data, protobuf) = match e.data {
            ClientFrame::Json(json) => (Some(json), None),
            ClientFrame::Protobuf(bytes) => (None, Some(BASE64.encode(bytes))),
        };
        EmulationMessage {
            session: e.session,
            data,
            protobuf,
        }
    }
}

/// One node as `/api/info` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique id of the process.
    pub uid: String,
    /// Node name (host name or configured).
    pub name: String,
    /// Herald version.
    pub version: String,
    /// Open client connections.
    pub num_clients: u64,
    /// Distinct users connected.
    pub num_users: u64,
    /// Channels with at least one local subscriber.
    pub num_channels: u64,
    /// Subscriptions (connection x channel).
    pub num_subs: u64,
    /// Seconds since start.
    pub uptime: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_frames_keep_their_message_and_protobuf_frames_travel_as_base64() {
        let json = Emulation {
            session: "s".into(),
            data: ClientFrame::Json("{}".into()),
        };
        let text = serde_json::to_string(&json).unwrap();
        assert_eq!(text, r#"{"session":"s","data":"{}"}"#);
        assert_eq!(serde_json::from_str::<Emulation>(&text).unwrap(), json);
        let binary = Emulation {
            session: "s".into(),
            data: ClientFrame::Protobuf(Bytes::from_static(&[0, 0xff, b'\n'])),
        };
        let text = serde_json::to_string(&binary).unwrap();
        assert_eq!(text, r#"{"session":"s","protobuf":"AP8K"}"#);
        assert_eq!(serde_json::from_str::<Emulation>(&text).unwrap(), binary);
    }

    #[test]
    fn a_message_with_both_or_neither_frame_is_refused() {
        for text in [
            r#"{"session":"s"}"#,
            r#"{"session":"s","data":"{}","protobuf":"AA=="}"#,
            r#"{"session":"s","protobuf":"not base64!"}"#,
        ] {
            assert!(serde_json::from_str::<Emulation>(text).is_err(), "{text}");
        }
    }
}
