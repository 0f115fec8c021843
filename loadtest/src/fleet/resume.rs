//! The reconnecting side of a subscriber (`--reconnect`): where it is in the topic's stream,
//! the order check of what it receives, and the redial loop (backoff, new connection,
//! subscribe with recovery from that position). Accounting of the recovered publications is
//! the caller's, through the same path as live ones.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::{Connection, Dialer, Payload, Position, Subscribed};
use crate::ledger::Order;
use crate::reconnect::{Backoff, Event, Tally};

/// A reconnecting subscriber's position, order check and reconnect record.
pub(super) struct Resume {
    position: Position,
    order: Order,
    tally: Tally,
}

impl Resume {
    /// State after the first subscribe (no reply: the stream position is unknown, offset 0).
    pub(super) fn new(subscribed: Option<&Subscribed>) -> Self {
        Resume {
            position: subscribed.map(|s| s.position.clone()).unwrap_or_default(),
            order: Order::default(),
            tally: Tally::default(),
        }
    }

    /// Notes the first receipt of publication `seq` at stream offset `offset` (if given).
    pub(super) fn observe(&mut self, seq: u64, offset: Option<u64>) {
        self.order.observe(offset.unwrap_or(seq));
        if let Some(o) = offset {
            self.position.offset = self.position.offset.max(o);
        }
    }

    /// Takes in the subscribe reply of a new connection; returns the recovered publications.
    fn resubscribed(&mut self, s: Subscribed) -> Vec<(Payload, Option<u64>)> {
        if s.position.epoch != self.position.epoch {
            // A new stream: its offsets start over.
            self.order.restart();
        }
        if s.recovered {
            // The recovered publications run up to the reply's position.
            self.position.offset = self.position.offset.max(s.position.offset);
            self.position.epoch = s.position.epoch;
        } else {
            // Told that the gap cannot be filled: the stream goes on from here.
            self.position = s.position;
        }
        s.publications
    }

    /// The reconnect record, with the order check's count.
    pub(super) fn into_tally(self) -> Tally {
        Tally {
            out_of_order: self.order.out_of_order,
            ..self.tally
        }
    }
}

/// Opens a new connection for `user` at node `via` (then at random other nodes, should that
/// fail) after the previous one ended with `code`, resuming the topic from `r`'s position: waits a backoff delay before each attempt and retries failed
/// ones, each within `connect_timeout`. Returns the connection and the publications its
/// subscribe reply recovered; `None` if the run ended (`cancel`) meanwhile.
pub(super) async fn redial(
    dialer: &Dialer,
    connect_timeout: Duration,
    cancel: &CancellationToken,
    backoff: Backoff,
    (user, mut via): (usize, usize),
    r: &mut Resume,
    code: Option<u16>,
) -> Option<(Connection, Vec<(Payload, Option<u64>)>)> {
    let closed_ms = unix_millis();
    let mut step = 0;
    loop {
        let delay = backoff.delay(step, rand::random::<f64>());
        let attempt = async {
            tokio::time::sleep(delay).await;
            tokio::time::timeout(
                connect_timeout,
                dialer.open_at(user, Some(&r.position), via),
            )
            .await
        };
        let opened = tokio::select! {
            _ = cancel.cancelled() => return None,
            opened = attempt => opened,
        };
        step += 1;
        match opened {
            Ok(Ok(mut conn)) => {
                let Some(subscribed) = conn.subscribed.take() else {
                    r.tally.failed_attempts += 1;
                    via = dialer.other_than(via);
                    continue;
                };
                let recovered = subscribed.recovered;
                let publications = r.resubscribed(subscribed);
                let event = Event {
                    closed_ms,
                    resumed_ms: unix_millis(),
                    code,
                    attempts: step,
                    recovered,
                    publications: publications.len() as u64,
                };
                r.tally.resumed(event);
                return Some((conn, publications));
            }
            Ok(Err(_)) | Err(_) => {
                r.tally.failed_attempts += 1;
                via = dialer.other_than(via);
            }
        }
    }
}

fn unix_millis() -> u64 {
    crate::stats::unix_micros() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn position_follows_offsets_and_recovery() {
        let first = Subscribed {
            position: pos("e1", 4),
            ..Subscribed::default()
        };
        let mut r = Resume::new(Some(&first));
        r.observe(0, Some(5));
        r.observe(1, Some(6));
        assert_eq!(r.position, pos("e1", 6));
        let p = Payload { seq: 2, ts: 0 };
        let recovered = r.resubscribed(Subscribed {
            position: pos("e1", 7),
            was_recovering: true,
            recovered: true,
            publications: vec![(p, Some(7))],
        });
        assert_eq!(recovered, vec![(p, Some(7))]);
        r.observe(2, Some(7));
        assert_eq!(r.position, pos("e1", 7));
        r.observe(1, Some(6));
        assert_eq!(r.into_tally().out_of_order, 1);
    }

    #[test]
    fn an_unrecovered_reply_moves_the_position_and_a_new_epoch_restarts_the_order() {
        let mut r = Resume::new(None);
        r.observe(0, Some(50));
        r.resubscribed(Subscribed {
            position: pos("e2", 3),
            was_recovering: true,
            ..Subscribed::default()
        });
        assert_eq!(r.position, pos("e2", 3));
        r.observe(1, Some(4));
        assert_eq!(r.into_tally().out_of_order, 0, "offsets of a new epoch");
    }
}
