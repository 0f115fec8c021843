//! A Herald node: one process's engine, hub, gateway and publisher, built on
//! listeners its owner has bound, and the owner of every task they run (one
//! `TaskTracker`, stopped by one root `CancellationToken`). It runs until told
//! to stop, then shuts down in order: readiness off and the client listener
//! closed, connections told to go spread over the drain period, a wait for
//! the last one (with a deadline), the remaining tasks cancelled, the engine
//! closed. It reads no environment, installs no logger and never exits.

pub mod config;
pub mod dev;
pub mod probes;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use herald_core::control::NodeInfo;
use herald_core::engine::{EngineError, Handler, NoConnections};
use herald_core::tls::{Certificate, TlsError};
use herald_core::{auth, Engine, Metrics};
use herald_gateway::drain::Drain;
use herald_gateway::{Gateway, Hub};
use herald_publisher::Publisher;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, Role};
use probes::Probes;

/// Accept queue length: connect storms must not overflow it (SYN retries cost a second).
const BACKLOG: u32 = 4096;

/// Binds a listener the way a node wants it (address reuse, no Nagle, a deep
/// accept queue). Port 0 picks a free port: read it from the listener.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The listeners a node serves on, already bound.
pub struct Listeners {
    /// Client connections: WebSocket, SSE, demo page (roles with a gateway).
    pub client: Option<TcpListener>,
    /// Server API, metrics and probes (every role).
    pub internal: TcpListener,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not start (Redis unreachable, for one).
    #[error("engine did not start: {0}")]
    Engine(#[from] EngineError),
    /// The token verification settings are unusable.
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthError),
    /// A role with a gateway was given no client listener.
    #[error("role {role} needs a client listener")]
    NoClientListener {
        /// The role.
        role: Role,
    },
    /// A listener's address could not be read.
    #[error("listener: {0}")]
    Io(#[from] io::Error),
    /// A listener's certificate or key could not be loaded.
    #[error("{listener} TLS: {source}")]
    Tls {
        /// The listener (`client` or `internal`).
        listener: &'static str,
        /// Why.
        source: TlsError,
    },
}

/// A started node.
pub struct Node {
    config: Config,
    root: CancellationToken,
    tasks: TaskTracker,
    metrics: Metrics,
    hub: Arc<Hub>,
    engine: Arc<Engine>,
    publisher: Arc<Publisher>,
    gateway: Option<Arc<Gateway>>,
    client: Option<(TcpListener, SocketAddr)>,
    internal: (TcpListener, SocketAddr),
    client_tls: Option<Arc<Certificate>>,
    internal_tls: Option<Arc<Certificate>>,
}

impl Node {
    /// Builds every part of the node and starts its engine.
    pub async fn start(config: Config, listeners: Listeners) -> Result<Node, Error> {
        let role = config.role;
        let client = match listeners.client {
            Some(listener) if role.has_gateway() => {
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
            None if role.has_gateway() => return Err(Error::NoClientListener { role }),
            _ => None,
        };
        let internal_addr = listeners.internal.local_addr()?;
        let client_tls = match &client {
            Some(_) => load_tls("client", &config.client_tls)?,
            None => None,
        };
        let internal_tls = load_tls("internal", &config.internal_tls)?;
        let root = CancellationToken::new();
        let tasks = TaskTracker::new();
        let metrics = Metrics::for_namespaces(&config.namespaces);
        let hub = Arc::new(Hub::new(config.name.clone(), metrics.clone()));
        let handler: Arc<dyn Handler> = if role.has_gateway() {
            hub.clone()
        } else {
            Arc::new(NoConnections {
                info: NodeInfo {
                    name: config.name.clone(),
                    version: herald_core::VERSION.into(),
                    ..NodeInfo::default()
                },
            })
        };
        let engine = Engine::start_under(&config.engine, handler, metrics.clone(), &root).await?;
        let engine = Arc::new(engine);
        let publisher = Arc::new(Publisher::new(
            engine.clone(),
            config.namespaces.clone(),
            metrics.clone(),
            config.api.key.clone(),
        ));
        let gateway = if role.has_gateway() {
            let parts = herald_gateway::Parts {
                hub: hub.clone(),
                engine: engine.clone(),
                namespaces: config.namespaces.clone(),
                metrics: metrics.clone(),
                tasks: tasks.clone(),
                cancel: root.child_token(),
            };
            match Gateway::new(config.client.clone(), &config.auth, parts) {
                Ok(gateway) => Some(Arc::new(gateway)),
                Err(e) => {
                    engine.close().await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        Ok(Node {
            client,
            internal: (listeners.internal, internal_addr),
            client_tls,
            internal_tls,
            config,
            root,
            tasks,
            metrics,
            hub,
            engine,
            publisher,
            gateway,
        })
    }

    /// The client listener's address (roles with a gateway).
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client.as_ref().map(|(_, addr)| *addr)
    }

    /// The internal listener's address.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal.1
    }

    /// The certificates of the listeners that serve TLS, to reload them.
    pub fn certificates(&self) -> tls::Certificates {
        let mut certificates = tls::Certificates::default();
        for (listener, certificate) in [
            ("client", &self.client_tls),
            ("internal", &self.internal_tls),
        ] {
            if let Some(certificate) = certificate {
                certificates.push(listener, certificate.clone());
            }
        }
        certificates
    }

    /// Serves until `stop` resolves, then shuts down in order; returns when
    /// every task has ended or the drain deadline has passed.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Node {
            config,
            root,
            tasks,
            metrics,
            hub,
            engine,
            publisher,
            gateway,
            client,
            internal,
            client_tls,
            internal_tls,
        } = self;
        let probes = Probes::new(engine.clone(), metrics);
        let mut internal_routes = probes::router(probes.clone());
        if config.role.has_publisher() {
            internal_routes = internal_routes.merge(herald_publisher::router(publisher.clone()));
        }
        match &internal_tls {
            None => tasks.spawn(serve_http(internal.0, internal_routes, root.clone())),
            Some(certificate) => {
                let acceptor = certificate.acceptor();
                let serve = tls::serve_https(internal.0, internal_routes, acceptor, root.clone());
                tasks.spawn(serve)
            }
        };
        // Cancelled when the drain begins: the client listener stops accepting.
        let stop_accepting = root.child_token();
        let client_addr = client.as_ref().map(|(_, addr)| *addr);
        if let (Some(gateway), Some((listener, _))) = (gateway, client) {
            let mut routes = herald_gateway::router(gateway.clone());
            if config.dev {
                let secret = config.auth.hmac_secret.as_deref().unwrap_or_default();
                routes = routes.merge(dev::router(secret, &publisher));
                let namespaces = config.namespaces.clone();
                tasks.spawn(dev::run_ticker(engine.clone(), namespaces, root.clone()));
            }
            let acceptor = client_tls.as_ref().map(Certificate::acceptor);
            let serve = herald_gateway::listener::serve(
                listener,
                gateway,
                routes,
                acceptor,
                stop_accepting.clone(),
            );
            tasks.spawn(serve);
        }
        let (role, engine_name) = (config.role, engine_name(&config.engine));
        for (listener, certificate) in [("client", &client_tls), ("internal", &internal_tls)] {
            if let Some(certificate) = certificate {
                let file = certificate.cert_file().display();
                info!(listener, %file, "TLS on");
            }
        }
        // Read by whoever bound port 0 (the test kit does).
        match client_addr {
            Some(client) => info!(%client, internal = %internal.1, %role, engine_name, "listening"),
            None => info!(internal = %internal.1, %role, engine_name, "listening"),
        }
        stop.await;

        let deadline = Instant::now() + config.drain_timeout;
        // In this order, with no await between: a client that sees readiness
        // off finds the listener closing and registration refused.
        let drain = Drain::begin(&hub);
        stop_accepting.cancel();
        probes.set_draining();
        info!(
            sessions = hub.num_sessions(),
            "shutting down: readiness off, listener closed, draining connections"
        );
        let remaining = drain.run(config.drain_spread, deadline).await;
        if remaining > 0 {
            warn!(remaining, "drain deadline passed");
        }
        root.cancel();
        tasks.close();
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = tasks.len(),
                "tasks still running at the drain deadline"
            );
        }
        engine.close().await;
        info!("stopped");
    }
}

fn load_tls(
    listener: &'static str,
    config: &herald_core::tls::Config,
) -> Result<Option<Arc<Certificate>>, Error> {
    Certificate::load(config).map_err(|source| Error::Tls { listener, source })
}

/// The engine's name for messages.
pub fn engine_name(config: &herald_core::engine::Config) -> &'static str {
    if !config.redis_cluster.is_empty() {
        "redis cluster"
    } else if config.redis_url.is_some() {
        "redis"
    } else {
        "memory"
    }
}

async fn serve_http(listener: TcpListener, router: Router, stop: CancellationToken) {
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await;
    if let Err(e) = result {
        warn!(error = %e, "listener stopped");
    }
}
