//! The command line: `herald [run]`, `herald check-config`, `herald gentoken`,
//! `herald selftest`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald_node::Role;

use crate::settings::Overrides;

/// Herald: real-time notifications over WebSocket, Centrifugo-compatible.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML); environment variables HERALD_<SECTION>__<KEY> override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Role: all, gateway or publisher (overrides server.role).
    #[arg(long, global = true, value_parser = clap::value_parser!(Role))]
    pub role: Option<Role>,
    /// Client listener (overrides server.client_addr).
    #[arg(long, global = true)]
    pub client_addr: Option<SocketAddr>,
    /// Internal listener (overrides server.internal_addr).
    #[arg(long, global = true)]
    pub internal_addr: Option<SocketAddr>,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The flags that override configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            role: self.role,
            client_addr: self.client_addr,
            internal_addr: self.internal_addr,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Run,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Print a connection token signed with auth.hmac_secret.
    Gentoken(GentokenArgs),
    /// Check a running deployment end to end: connect, subscribe, publish, receive.
    Selftest(SelftestArgs),
}

/// `herald selftest` options.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Base URL of the server API (internal port), e.g. http://herald-publisher:8001.
    #[arg(long)]
    pub api: String,
    /// WebSocket URL, e.g. ws://herald-gateway:8000/connection/websocket.
    #[arg(long)]
    pub ws: String,
    /// How long the whole check may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `herald gentoken` options.
#[derive(Debug, Args)]
pub struct GentokenArgs {
    /// User id (the `sub` claim).
    #[arg(long)]
    pub user: String,
    /// Lifetime, e.g. 1h, 30m (default 1h; 0 for no expiry).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Extra server-side channels, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
}
