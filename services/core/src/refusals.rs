//! The log of refused authentications (bad or expired tokens, a wrong server
//! API key): one info line each with the reason and the remote address, at
//! most [`LINES_PER_SECOND`] a second per process, then one summary line with
//! the count left out. Process-wide on purpose: the bound is per node,
//! whichever role refused, and a flood of bad credentials must not flood the log.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

/// Refusals logged per second at most.
pub const LINES_PER_SECOND: u32 = 20;

/// The current one-second window.
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

static WINDOW: Mutex<Window> = Mutex::new(Window {
    started: None,
    logged: 0,
    suppressed: 0,
});

/// What the limiter decided for one refusal.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    /// Log this refusal.
    log: bool,
    /// Refusals left out in the window that just ended (a summary is due).
    suppressed: u64,
}

impl Window {
    fn admit(&mut self, now: Instant) -> Decision {
        let mut suppressed = 0;
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            suppressed = std::mem::take(&mut self.suppressed);
            self.started = Some(now);
            self.logged = 0;
        }
        let log = self.logged < LINES_PER_SECOND;
        if log {
            self.logged += 1;
        } else {
            self.suppressed += 1;
        }
        Decision { log, suppressed }
    }
}

/// Logs one refused authentication: `kind` says what was refused (`connect
/// token`, `api key`), `transport` where (`websocket`, `sse`, `http api`).
pub fn refused(kind: &str, transport: &str, reason: &dyn Display, remote: Option<SocketAddr>) {
    let decision = WINDOW
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(Instant::now());
    if decision.suppressed > 0 {
        info!(
            suppressed = decision.suppressed,
            "authentication refusals not logged in the last window (rate limit)"
        );
    }
    if decision.log {
        let remote = remote.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        info!(kind, transport, reason = %reason, remote = %remote, "authentication refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_to_the_rate_then_summarised() {
        let mut w = Window {
            started: None,
            logged: 0,
            suppressed: 0,
        };
        let t0 = Instant::now();
        let logged = (0..1000).filter(|_| w.admit(t0).log).count();
        assert_eq!(logged, LINES_PER_SECOND as usize);
        let next = w.admit(t0 + Duration::from_secs(1));
        assert_eq!(
            next,
            Decision {
                log: true,
                suppressed: 1000 - u64::from(LINES_PER_SECOND)
            }
        );
        assert_eq!(w.admit(t0 + Duration::from_secs(3)).suppressed, 0);
    }
}
