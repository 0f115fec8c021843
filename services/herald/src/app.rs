//! Wires the roles of one process: metrics, hub, engine, the client and
//! internal listeners, probes, and the ordered shutdown (readiness off, stop
//! accepting, drain connections, close the engine).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use herald_core::control::NodeInfo;
use herald_core::engine::{Handler, NoConnections};
use herald_core::{Engine, Metrics};
use herald_gateway::drain::Drain;
use herald_gateway::{Gateway, Hub};
use herald_publisher::Publisher;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::dev;
use crate::settings::Settings;

struct Probes {
    engine: Arc<Engine>,
    draining: AtomicBool,
    metrics: Metrics,
}

/// Runs until SIGTERM or SIGINT, then shuts down in order.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let dev = settings
        .dev_mode
        .then(|| dev::DevMode::prepare(&mut settings));
    let metrics = Metrics::new();
    let namespaces = settings.namespaces();
    let role = settings.server.role;
    let name = settings.server.name.clone().unwrap_or_else(host_name);
    let hub = Arc::new(Hub::new(name.clone(), metrics.clone()));
    let handler: Arc<dyn Handler> = if role.has_gateway() {
        hub.clone()
    } else {
        Arc::new(NoConnections {
            info: NodeInfo {
                name,
                version: herald_core::VERSION.into(),
                ..NodeInfo::default()
            },
        })
    };
    let engine = Arc::new(
        Engine::start(&settings.engine, handler, metrics.clone())
            .await
            .context("engine did not start")?,
    );
    let probes = Arc::new(Probes {
        engine: engine.clone(),
        draining: AtomicBool::new(false),
        metrics: metrics.clone(),
    });
    let publisher = Arc::new(Publisher::new(
        engine.clone(),
        namespaces.clone(),
        metrics.clone(),
        settings.api.key.clone(),
    ));

    let mut internal = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(p): State<Arc<Probes>>| async move { p.metrics.render() }),
        )
        .with_state(probes.clone());
    if role.has_publisher() {
        internal = internal.merge(herald_publisher::router(publisher.clone()));
    }

    let shutdown = CancellationToken::new();
    // Cancelled when the drain begins: the client listener stops accepting.
    let stop_accepting = CancellationToken::new();
    let tasks = TaskTracker::new();
    let internal_listener = bind(settings.server.internal_addr, "server.internal_addr").await?;
    info!(addr = %internal_listener.local_addr()?, role = %role, engine = settings.engine_name(), "internal listener");
    tasks.spawn(serve(internal_listener, internal, shutdown.clone()));

    if role.has_gateway() {
        let gateway = Arc::new(Gateway::new(
            settings.client.clone(),
            &settings.auth,
            namespaces.clone(),
            hub.clone(),
            engine.clone(),
            metrics.clone(),
        )?);
        let mut client = herald_gateway::router(gateway.clone());
        if let Some(dev) = &dev {
            client = client.merge(dev.router(&settings, publisher.clone()));
        }
        let listener = bind(settings.server.client_addr, "server.client_addr").await?;
        let addr = listener.local_addr()?;
        info!(addr = %addr, "client listener");
        if let Some(dev) = &dev {
            dev.announce(addr, &settings);
            tasks.spawn(dev::run_ticker(
                engine.clone(),
                namespaces.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(herald_gateway::listener::serve(
            listener,
            gateway,
            client,
            stop_accepting.clone(),
        ));
    }
    tasks.close();

    wait_for_signal().await;
    let deadline = tokio::time::Instant::now() + settings.server.drain_timeout;
    // In this order, with no await between: a client that sees readiness off
    // finds the listener closing and registration refused.
    let drain = Drain::begin(&hub);
    stop_accepting.cancel();
    probes.draining.store(true, Ordering::SeqCst);
    info!(
        sessions = hub.num_sessions(),
        "shutting down: readiness off, listener closed, draining connections"
    );
    let remaining = drain.run(settings.server.drain_spread, deadline).await;
    if remaining > 0 {
        warn!(remaining, "drain deadline passed");
    }
    shutdown.cancel();
    let _ = tokio::time::timeout_at(deadline, tasks.wait()).await;
    engine.close().await;
    info!("stopped");
    Ok(())
}

async fn readyz(State(p): State<Arc<Probes>>) -> (StatusCode, &'static str) {
    if p.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !p.engine.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine not ready")
    } else {
        (StatusCode::OK, "ready")
    }
}

/// Accept queue length: connect storms must not overflow it (SYN retries cost a second).
const BACKLOG: u32 = 4096;

async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().with_context(|| format!("{key}: cannot listen on {addr}"))
}

async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, router.into_make_service())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "listener stopped");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "herald".into())
}
