//! Graceful drain: on shutdown every connection is told to reconnect elsewhere
//! (close 3001 "shutdown"), spread over a period so that the remaining nodes
//! do not take one reconnect storm.

use std::time::Duration;

use herald_core::protocol::Disconnect;
use rand::seq::SliceRandom;

use crate::hub::Hub;

/// Steps the closing is divided into.
const STEPS: u32 = 20;

/// Closes every connection of the hub, in random order, evenly over `spread`.
pub async fn close_all(hub: &Hub, spread: Duration) {
    let mut sessions = hub.all_sessions();
    if sessions.is_empty() {
        return;
    }
    sessions.shuffle(&mut rand::rng());
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
    use crate::outbox::Outbox;
    use herald_core::Metrics;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn closes_every_session_within_the_spread() {
        let hub = Hub::new("n".into(), Metrics::new());
        let outboxes: Vec<_> = (0..50)
            .map(|i| {
                let o = Outbox::new(1);
                hub.add_session(&Arc::from("u"), i, Arc::from(format!("c{i}")), o.clone());
                o
            })
            .collect();
        let started = tokio::time::Instant::now();
        close_all(&hub, Duration::from_secs(5)).await;
        assert!(started.elapsed() <= Duration::from_secs(5));
        assert!(outboxes
            .iter()
            .all(|o| o.closing() == Some(Disconnect::SHUTDOWN)));
    }
}
