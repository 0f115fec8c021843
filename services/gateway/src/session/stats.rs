//! What a session counts: its commands (method, result, time) and, by
//! transport, its connect and its close (code, lifetime, queue high water).

use std::time::Duration;

use herald_core::metrics::TransportMetrics;
use herald_core::protocol::{Disconnect, Error, Request};
use tokio::time::Instant;

use super::Session;

impl Session {
    /// The series of this connection's transport.
    pub(super) fn transport_metrics(&self) -> &TransportMetrics {
        self.gw.metrics.transport(self.transport)
    }

    /// Counts a handled command: `ok`, its error code, or the close code
    /// when it ended the connection.
    pub(super) fn count_command(
        &self,
        method: &'static str,
        answer: &Result<Result<(), Error>, Disconnect>,
        took: Duration,
    ) {
        let code;
        let result = match answer {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                code = e.code().to_string();
                &code
            }
            Err(d) => {
                code = d.code.to_string();
                &code
            }
        };
        let seconds = took.as_secs_f64();
        self.gw.metrics.client_command(method, result, seconds);
    }

    /// Counts the connection's close with `code`.
    pub(super) fn count_close(&self, code: u16) {
        // The connect deadline is the opening time plus the stale timeout:
        // the opening time needs no field of its own.
        let opened = self.connect_deadline;
        let now = Instant::now() + self.gw.config.stale_timeout;
        let lifetime = now.saturating_duration_since(opened).as_secs_f64();
        let high_water = self.outbox.high_water();
        self.transport_metrics().closed(code, lifetime, high_water);
    }
}

/// The `method` label of a command.
pub(super) fn method_name(r: &Request) -> &'static str {
    match r {
        Request::Connect(_) => "connect",
        Request::Subscribe(_) => "subscribe",
        Request::Unsubscribe(_) => "unsubscribe",
        Request::Publish(_) => "publish",
        Request::Presence(_) => "presence",
        Request::PresenceStats(_) => "presence_stats",
        Request::History(_) => "history",
        Request::Ping => "ping",
        Request::Rpc(_) => "rpc",
        Request::Refresh(_) => "refresh",
        Request::SubRefresh(_) => "sub_refresh",
        Request::Send(_) => "send",
        Request::Pong => "pong",
    }
}
