//! Configuration of the whole process, layered: built-in defaults < `--config`
//! file < `HERALD_<SECTION>__<KEY>` environment < command-line flags. Each
//! library owns its section; this module composes and validates them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use herald_core::namespace::{self, Namespaces};
use herald_core::{auth, engine, tls};
use herald_node::Role;
use serde::Deserialize;

/// Command-line values that override every other layer.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `server.role`.
    pub role: Option<Role>,
    /// `server.client_addr`.
    pub client_addr: Option<SocketAddr>,
    /// `server.internal_addr`.
    pub internal_addr: Option<SocketAddr>,
}

/// The `[server]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Roles this process runs.
    pub role: Role,
    /// Client listener (WebSocket, SSE, demo page).
    pub client_addr: SocketAddr,
    /// Internal listener (server API, metrics, probes).
    pub internal_addr: SocketAddr,
    /// Node name in `/api/info` (default: host name).
    pub name: Option<String>,
    /// Period over which connections are told to reconnect elsewhere on shutdown.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub drain_spread: Duration,
    /// Longest shutdown before remaining connections are dropped.
    #[serde(deserialize_with = "herald_core::config::duration")]
    pub drain_timeout: Duration,
    /// TLS of the client listener: `cert_file` and `key_file` (PEM), or neither.
    pub client_tls: tls::Config,
    /// TLS of the internal listener, likewise.
    pub internal_tls: tls::Config,
    /// Runtime worker threads, which is also the number of flushers (default: one per CPU the
    /// process may use). Several nodes sharing a few cores run best with one each.
    pub worker_threads: Option<usize>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            role: Role::All,
            client_addr: "0.0.0.0:8000".parse().expect("valid"),
            internal_addr: "0.0.0.0:8001".parse().expect("valid"),
            name: None,
            drain_spread: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            client_tls: tls::Config::default(),
            internal_tls: tls::Config::default(),
            worker_threads: None,
        }
    }
}

/// Every section.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `[server]`.
    #[serde(default)]
    pub server: Server,
    /// `[engine]`.
    #[serde(default)]
    pub engine: engine::Config,
    /// `[auth]`.
    #[serde(default)]
    pub auth: auth::Config,
    /// `[api]`.
    #[serde(default)]
    pub api: herald_publisher::Config,
    /// `[client]`.
    #[serde(default)]
    pub client: herald_gateway::Config,
    /// `[namespaces.<name>]`.
    #[serde(default)]
    pub namespaces: HashMap<String, namespace::Config>,
    /// Top-level keys no section owns: plain `HERALD_X` variables are not ours and
    /// are ignored, but an unknown section (`HERALD_SERVR__ROLE`) is an error.
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
    /// Set when no verification key is configured.
    #[serde(skip)]
    pub dev_mode: bool,
    /// Resolved namespaces.
    #[serde(skip)]
    pub resolved_namespaces: Option<Namespaces>,
}

impl Settings {
    /// Loads and validates every layer: `file` (TOML), the environment, `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, String> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            let path = path.to_str().ok_or("--config: path is not UTF-8")?;
            builder = builder.add_source(File::new(path, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("HERALD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        if let Some(role) = overrides.role {
            builder = builder
                .set_override("server.role", role.to_string())
                .map_err(|e| e.to_string())?;
        }
        if let Some(a) = overrides.client_addr {
            builder = builder
                .set_override("server.client_addr", a.to_string())
                .map_err(|e| e.to_string())?;
        }
        if let Some(a) = overrides.internal_addr {
            builder = builder
                .set_override("server.internal_addr", a.to_string())
                .map_err(|e| e.to_string())?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&mut self) -> Result<(), String> {
        if let Some((key, _)) = self.other.iter().find(|(_, v)| v.is_object()) {
            return Err(format!("{key}: unknown section"));
        }
        if self.server.worker_threads == Some(0) {
            return Err("server.worker_threads: must be at least 1".to_owned());
        }
        self.client.validate().map_err(|e| e.to_string())?;
        self.resolved_namespaces =
            Some(Namespaces::from_config(&self.namespaces).map_err(|e| e.to_string())?);
        auth::Verifier::new(&self.auth).map_err(|e| e.to_string())?;
        if let Some(url) = &self.engine.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err("engine.redis_url: must start with redis:// or rediss://".into());
            }
        }
        if self.engine.redis_url.is_some() && !self.engine.redis_cluster.is_empty() {
            return Err(
                "engine.redis_cluster: set either redis_url or redis_cluster, not both".into(),
            );
        }
        if self.server.role.has_gateway() {
            tls::Certificate::load(&self.server.client_tls)
                .map_err(|e| format!("server.client_tls: {e}"))?;
        }
        tls::Certificate::load(&self.server.internal_tls)
            .map_err(|e| format!("server.internal_tls: {e}"))?;
        if self.server.drain_spread > self.server.drain_timeout {
            return Err("server.drain_spread: must not exceed server.drain_timeout".into());
        }
        if matches!(&self.auth.hmac_secret, Some(s) if s.is_empty()) {
            return Err("auth.hmac_secret: must not be empty".into());
        }
        self.dev_mode = self.auth.hmac_secret.is_none()
            && self.auth.public_key.is_none()
            && self.auth.jwks_url.is_none();
        if self.dev_mode {
            if self.server.role != Role::All {
                return Err("auth.hmac_secret: required with role gateway or publisher (dev mode runs only as role all)".into());
            }
            if self.engine.is_redis() {
                return Err(
                    "auth.hmac_secret: required with a Redis engine (dev mode is single-process)"
                        .into(),
                );
            }
        } else if self.server.role.has_publisher()
            && self.api.key.as_deref().is_none_or(str::is_empty)
        {
            return Err("api.key: required (HERALD_API__KEY) unless running in dev mode".into());
        }
        Ok(())
    }

    /// The engine's name for messages.
    pub fn engine_name(&self) -> &'static str {
        herald_node::engine_name(&self.engine)
    }

    /// What the node runs with (`name` when `server.name` is unset).
    pub fn node_config(&self, name: impl FnOnce() -> String) -> herald_node::Config {
        herald_node::Config {
            role: self.server.role,
            name: self.server.name.clone().unwrap_or_else(name),
            drain_spread: self.server.drain_spread,
            drain_timeout: self.server.drain_timeout,
            engine: self.engine.clone(),
            auth: self.auth.clone(),
            api: self.api.clone(),
            client: self.client.clone(),
            namespaces: self.namespaces(),
            client_tls: self.server.client_tls.clone(),
            internal_tls: self.server.internal_tls.clone(),
            dev: self.dev_mode,
        }
    }

    /// The validated namespaces.
    pub fn namespaces(&self) -> Namespaces {
        self.resolved_namespaces.clone().unwrap_or_default()
    }
}
