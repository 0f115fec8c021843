//! Herald's gateway: terminates client connections (WebSocket, SSE and
//! Centrifugo's unidirectional transports), authenticates them, keeps the
//! node's subscriptions in the [`hub::Hub`] and fans publications out to
//! local sockets. It does not serve the server API.

pub mod admission;
pub mod config;
pub mod cors;
pub mod demo;
pub mod drain;
pub mod emulation;
pub mod flusher;
pub mod frame;
pub mod frame_queue;
pub mod hub;
pub mod listener;
pub mod outbox;
pub mod prefixed;
pub mod session;
pub mod small_map;
pub mod sse;
mod subscribers;
pub mod uni;
pub mod write_stats;
pub mod writer;
pub mod ws;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::routing::{get, post};
use axum::Router;
use herald_core::auth::{self, Verifier};
use herald_core::namespace::Namespaces;
use herald_core::{Engine, Metrics};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use hub::Hub;

/// What a gateway shares with the rest of its node.
pub struct Parts {
    /// Local connections and subscriptions.
    pub hub: Arc<Hub>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Channel options.
    pub namespaces: Namespaces,
    /// Metrics.
    pub metrics: Metrics,
    /// Owns every task the gateway spawns: connections and flushers.
    pub tasks: TaskTracker,
    /// Stops the gateway's long-lived tasks (the flushers); connections end
    /// through the drain (see [`drain`]).
    pub cancel: CancellationToken,
}

/// Everything sessions of this node share.
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) hub: Arc<Hub>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) verifier: Verifier,
    pub(crate) namespaces: Namespaces,
    pub(crate) metrics: Metrics,
    /// Browser origins allowed to connect (`*`: any).
    allowed_origins: Vec<String>,
    /// Connections without a token are anonymous.
    pub(crate) anonymous: bool,
    tasks: TaskTracker,
    cancel: CancellationToken,
    next_conn: AtomicU64,
    flushers: OnceLock<flusher::Flushers>,
    /// The node's connection cap and connect rate.
    pub(crate) admission: Arc<admission::Admission>,
    /// The clock of per-connection command budgets.
    started: std::time::Instant,
}

impl Gateway {
    /// Assembles a gateway.
    pub fn new(
        config: Config,
        auth: &auth::Config,
        parts: Parts,
    ) -> Result<Gateway, auth::AuthError> {
        let admission = admission::Admission::new(config.max_connections, config.connect_rate);
        let verifier = Verifier::new(auth)?;
        verifier.spawn_refresh(&parts.tasks, &parts.cancel, parts.metrics.registry());
        Ok(Gateway {
            config,
            verifier,
            allowed_origins: auth.allowed_origins.clone(),
            anonymous: auth.anonymous,
            hub: parts.hub,
            engine: parts.engine,
            namespaces: parts.namespaces,
            metrics: parts.metrics,
            tasks: parts.tasks,
            cancel: parts.cancel,
            next_conn: AtomicU64::new(1),
            flushers: OnceLock::new(),
            admission,
            started: std::time::Instant::now(),
        })
    }

    /// Runs `task` on the node's tracker (connections, and work they leave behind).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Milliseconds since the gateway started, wrapping (command budgets).
    pub(crate) fn clock_ms(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    /// Admits a new connection, counting a refusal.
    pub(crate) fn admit(&self) -> Result<admission::Slot, admission::Refusal> {
        self.admission.admit().inspect_err(|refusal| {
            self.metrics.connection_refused(refusal.as_str());
        })
    }

    /// A process-unique connection number.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The flusher that writes connection `conn`'s frames (started with the first
    /// WebSocket or SSE stream, one per runtime worker).
    pub(crate) fn flusher(&self, conn: u64) -> Arc<flusher::Shard> {
        self.flushers
            .get_or_init(|| {
                let threads = tokio::runtime::Handle::current().metrics().num_workers();
                flusher::Flushers::start(threads, &self.metrics, &self.tasks, &self.cancel)
            })
            .shard(conn)
    }

    /// Whether a browser `Origin` header may open a connection to `host` (the
    /// request's `Host`). Requests without `Origin` come from non-browser
    /// clients and are allowed; a page served from this very host (the demo
    /// page) is same-origin and allowed; any other origin must be listed in
    /// `auth.allowed_origins`.
    pub fn is_origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        if authority.is_some_and(|a| host.is_some_and(|h| a.eq_ignore_ascii_case(h))) {
            return true;
        }
        self.allowed_origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    }
}

/// The client-facing routes: `/connection/websocket`, `/connection/sse`, the
/// unidirectional `/connection/uni_*` ([`uni`]), the emulation endpoints
/// `/connection/http_stream` and `/emulation` ([`emulation`]), `/health` and
/// the demo page.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(ws::PATH, get(ws::upgrade))
        .route(
            sse::PATH,
            get(sse::stream)
                .post(emulation::sse::post)
                .options(cors::preflight),
        )
        .route(uni::websocket::PATH, get(uni::websocket::upgrade))
        .route(
            uni::http::SSE_PATH,
            get(uni::http::sse_get)
                .post(uni::http::sse_post)
                .options(uni::http::sse_preflight),
        )
        .route(
            uni::http::STREAM_PATH,
            post(uni::http::stream_post).options(uni::http::stream_preflight),
        )
        .route(
            emulation::http_stream::PATH,
            post(emulation::http_stream::open).options(cors::preflight_post),
        )
        .route(
            emulation::PATH,
            post(emulation::receive).options(cors::preflight_post),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(gateway)
        .merge(demo::router())
}
