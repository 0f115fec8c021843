//! The internal port's own routes, served by every role: `/livez`, `/readyz`
//! (false while draining or while the engine cannot deliver) and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use herald_core::{Engine, Metrics};

/// What the probes look at.
pub struct Probes {
    engine: Arc<Engine>,
    draining: AtomicBool,
    metrics: Metrics,
}

impl Probes {
    /// Probes of a node that is not draining.
    pub fn new(engine: Arc<Engine>, metrics: Metrics) -> Arc<Probes> {
        Arc::new(Probes {
            engine,
            draining: AtomicBool::new(false),
            metrics,
        })
    }

    /// Turns readiness off for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// `/livez`, `/readyz` and `/metrics`.
pub fn router(probes: Arc<Probes>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
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

/// The exposition, with `herald_engine_up` read from the engine at scrape time.
async fn metrics(State(p): State<Arc<Probes>>) -> String {
    p.metrics.engine_up.set(i64::from(p.engine.is_ready()));
    p.metrics.render()
}
