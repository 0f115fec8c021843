//! The command line: `herald [run]`, `herald check-config`, `herald gentoken`,
//! `herald selftest`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::settings::{Role, Settings};

/// Herald: real-time notifications over WebSocket, Centrifugo-compatible.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML); environment variables HERALD_<SECTION>__<KEY> override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Role: all, gateway or publisher (overrides server.role).
    #[arg(long, global = true)]
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

/// Mints a token for `herald gentoken`.
pub fn gentoken(settings: &Settings, args: &GentokenArgs) -> Result<String, String> {
    let secret = settings
        .auth
        .hmac_secret
        .as_deref()
        .ok_or("gentoken needs auth.hmac_secret (HERALD_AUTH__HMAC_SECRET)")?;
    let ttl = (!args.ttl.is_zero()).then_some(args.ttl);
    Ok(herald_core::auth::mint_connect(
        secret,
        &args.user,
        ttl,
        args.channels.clone(),
    ))
}
