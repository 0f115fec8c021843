//! Cluster-wide commands (server API actions that must reach whichever node
//! holds a user's connections), client commands of the bidirectional
//! emulation on their way to the node holding the session, and node
//! descriptions for `/api/info`.

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
pub struct Emulation {
    /// The session id from the connect reply.
    pub session: String,
    /// The client's frame: newline-separated JSON commands.
    pub data: String,
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
