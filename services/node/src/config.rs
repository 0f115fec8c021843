//! What a node runs with, validated and composed by its owner (the binary
//! reads it from files and the environment; tests build it directly). This
//! module owns the role; the sections belong to their libraries.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herald_core::namespace::Namespaces;
use herald_core::{auth, engine, tls};
use serde::Deserialize;

/// Which parts of Herald a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Gateway and publisher.
    All,
    /// Client connections only.
    Gateway,
    /// Server API only.
    Publisher,
}

impl Role {
    /// Whether client connections are served.
    pub fn has_gateway(self) -> bool {
        matches!(self, Role::All | Role::Gateway)
    }

    /// Whether the server API is served.
    pub fn has_publisher(self) -> bool {
        matches!(self, Role::All | Role::Publisher)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Gateway => "gateway",
            Role::Publisher => "publisher",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "all" => Ok(Role::All),
            "gateway" => Ok(Role::Gateway),
            "publisher" => Ok(Role::Publisher),
            _ => Err(format!("unknown role {s:?} (all, gateway or publisher)")),
        }
    }
}

/// Everything a node needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Config {
    /// Roles this node runs.
    pub role: Role,
    /// Node name in `/api/info`.
    pub name: String,
    /// Period over which connections are told to reconnect elsewhere on shutdown.
    pub drain_spread: Duration,
    /// Longest shutdown before remaining connections are dropped.
    pub drain_timeout: Duration,
    /// `[engine]`.
    pub engine: engine::Config,
    /// `[auth]`.
    pub auth: auth::Config,
    /// `[api]`.
    pub api: herald_publisher::Config,
    /// `[client]`.
    pub client: herald_gateway::Config,
    /// Channel options.
    pub namespaces: Namespaces,
    /// TLS of the client listener (none: plain TCP).
    pub client_tls: tls::Config,
    /// TLS of the internal listener (none: plain TCP).
    pub internal_tls: tls::Config,
    /// Dev mode: `/dev/token`, `/dev/api/publish` on the client port and a
    /// demo ticker (the owner fills in the generated secret and key).
    pub dev: bool,
}

impl Config {
    /// A single-process node (role all, memory engine) with default sections.
    pub fn new(name: impl Into<String>) -> Config {
        Config {
            role: Role::All,
            name: name.into(),
            drain_spread: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            engine: engine::Config::default(),
            auth: auth::Config::default(),
            api: herald_publisher::Config::default(),
            client: herald_gateway::Config::default(),
            namespaces: Namespaces::default(),
            client_tls: tls::Config::default(),
            internal_tls: tls::Config::default(),
            dev: false,
        }
    }
}
