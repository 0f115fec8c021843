//! Admission of new client connections: the node's cap on open connections
//! (`client.max_connections`) and its connect rate (`client.connect_rate`).
//! A refused request is answered `503` with `Retry-After` before any upgrade,
//! so SDKs back off and reconnect (through the balancer, often to another
//! node) instead of the node spending a session on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Seconds a refused client is asked to wait.
const RETRY_AFTER: &str = "1";

/// The node's admission state.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    open: AtomicUsize,
    rate: Option<Mutex<Bucket>>,
}

/// Connects allowed now (at most one second's worth) and when it was filled.
#[derive(Debug)]
struct Bucket {
    per_second: f64,
    tokens: f64,
    filled: Instant,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `client.max_connections`.
    Full,
    /// Over `client.connect_rate`.
    Rate,
}

/// An admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Admission>);

impl Admission {
    /// At most `max` open connections (0: no cap) and `per_second` new ones
    /// a second (0: no limit).
    pub fn new(max: usize, per_second: u32) -> Arc<Admission> {
        let rate = (per_second > 0).then(|| {
            Mutex::new(Bucket {
                per_second: f64::from(per_second),
                tokens: f64::from(per_second),
                filled: Instant::now(),
            })
        });
        Arc::new(Admission {
            max,
            open: AtomicUsize::new(0),
            rate,
        })
    }

    /// A slot for a new connection, or why there is none.
    pub fn admit(self: &Arc<Self>) -> Result<Slot, Refusal> {
        if self.max > 0 && self.open.load(Ordering::Relaxed) >= self.max {
            return Err(Refusal::Full);
        }
        if let Some(bucket) = &self.rate {
            if !bucket.lock().expect("poisoned").take() {
                return Err(Refusal::Rate);
            }
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max && self.max > 0 {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        Ok(Slot(self.clone()))
    }

    /// Connections holding a slot.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.filled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.filled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Refusal {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::Rate => "rate",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "connection limit reached on this node, retry later",
            Refusal::Rate => "too many new connections on this node, retry later",
        }
    }

    /// The whole HTTP/1.1 answer, for the listener's own upgrade path.
    pub fn raw_response(self) -> String {
        let body = self.reason();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: {RETRY_AFTER}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER)],
            self.reason(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_open_slots() {
        let admission = Admission::new(2, 0);
        let a = admission.admit().unwrap();
        let _b = admission.admit().unwrap();
        assert_eq!(admission.admit().unwrap_err(), Refusal::Full);
        drop(a);
        assert_eq!(admission.open(), 1);
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn the_rate_allows_one_seconds_worth_at_once() {
        let admission = Admission::new(0, 3);
        let slots: Vec<_> = (0..3).map(|_| admission.admit().unwrap()).collect();
        assert_eq!(admission.admit().unwrap_err(), Refusal::Rate);
        drop(slots);
        assert_eq!(admission.open(), 0);
    }
}
