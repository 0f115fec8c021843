//! Graceful drain: on shutdown every connection is told to reconnect elsewhere
//! (close 3001 "shutdown"), spread over a period so that the remaining nodes
//! do not take one reconnect storm. Sessions that would register after the
//! drain began are refused by the [`Hub`]; the drain ends when the last
//! session has, or at its deadline.

use std::sync::Arc;
use std::time::Duration;

use herald_core::protocol::Disconnect;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::hub::Hub;
use crate::outbox::Outbox;

/// Steps the closing is divided into.
const STEPS: u32 = 20;

/// A drain in progress.
pub struct Drain<'a> {
    hub: &'a Hub,
    sessions: Vec<Arc<Outbox>>,
}

impl<'a> Drain<'a> {
    /// Begins draining `hub`: from now on no session registers with it.
    pub fn begin(hub: &'a Hub) -> Drain<'a> {
        Drain {
            sessions: hub.start_drain(),
            hub,
        }
    }

    /// Tells every session to go, in random order, evenly over `spread`, then
    /// waits for the last one to end. At `deadline` the sessions not told yet
    /// are told at once; returns how many sessions were still open then.
    pub async fn run(mut self, spread: Duration, deadline: Instant) -> usize {
        self.sessions.shuffle(&mut rand::rng());
        let hub = self.hub;
        let sessions = &self.sessions;
        let drained = async move {
            close_spread(sessions, spread).await;
            hub.drained().await;
        };
        if tokio::time::timeout_at(deadline, drained).await.is_ok() {
            return 0;
        }
        for outbox in &self.sessions {
            outbox.close(Disconnect::SHUTDOWN);
        }
        hub.num_sessions()
    }
}

async fn close_spread(sessions: &[Arc<Outbox>], spread: Duration) {
    if sessions.is_empty() {
        return;
    }
    let per_step = sessions.len().div_ceil(STEPS as usize);
    let pause = spread / STEPS;
    for (i, chunk) in sessions.chunks(per_step).enumerate() {
        if i > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        for outbox in chunk {
            outbox.close(Disconnect::SHUTDOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::Metrics;

    #[tokio::test(start_paused = true)]
    async fn closes_every_session_within_the_spread() {
        let hub = Hub::new("n".into(), Metrics::new());
        let outboxes: Vec<_> = (0..50)
            .map(|i| {
                let o = Outbox::new(1);
                hub.add_session(&Arc::from("u"), i, Arc::from(format!("c{i}")), o.clone(), 0);
                o
            })
            .collect();
        let started = Instant::now();
        let remaining = Drain::begin(&hub)
            .run(Duration::from_secs(5), started + Duration::from_secs(30))
            .await;
        assert_eq!(remaining, 0, "no session was opened through the hub");
        assert!(started.elapsed() <= Duration::from_secs(5));
        assert!(outboxes
            .iter()
            .all(|o| o.closing() == Some(Disconnect::SHUTDOWN)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_tells_everyone_at_once_and_counts_the_rest() {
        let hub = Hub::new("n".into(), Metrics::new());
        let outboxes: Vec<_> = (0..40)
            .map(|i| {
                let o = Outbox::new(1);
                hub.open_session(i, &o);
                o
            })
            .collect();
        let started = Instant::now();
        let remaining = Drain::begin(&hub)
            .run(Duration::from_secs(10), started + Duration::from_secs(2))
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(remaining, 40, "nothing ended the sessions");
        assert!(outboxes
            .iter()
            .all(|o| o.closing() == Some(Disconnect::SHUTDOWN)));
    }
}
