//! Reconnecting subscribers (`--reconnect`): which ends of a connection call for a new one, the
//! jittered backoff between attempts (the centrifuge SDKs' formula), and the record of every
//! reconnect with its totals for the summary. No IO; the receive loop in `fleet` drives it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::summary::Storm;

/// Delay before each reconnect attempt: `min` plus a uniformly random part of `min·2^step`,
/// capped at `max`, as the centrifuge SDKs compute it. The randomness spreads the clients of
/// a closed node over time instead of sending them back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Shortest delay (and the scale of the random part of the first one).
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `step` (0 for the first) for a `unit` drawn uniformly from [0, 1).
    pub fn delay(&self, step: u32, unit: f64) -> Duration {
        let grown = self.min.saturating_mul(1u32 << step.min(31));
        let spread = grown.min(self.max).mul_f64(unit.clamp(0.0, 1.0));
        (self.min + spread).min(self.max)
    }
}

/// Whether a connection that ended with disconnect code `code` (`None`: the socket dropped
/// without one) should be opened again. Centrifugo's rule, which the SDKs follow: 3500-3999 and
/// 4500-4999 are terminal (bad token, bad request, ...), everything else advises a reconnect
/// (3000-3499 such as 3001 "shutdown", going-away and abnormal WebSocket closes).
pub fn is_advised(code: Option<u16>) -> bool {
    !matches!(code, Some(3500..=3999 | 4500..=4999))
}

/// One reconnect of one subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the connection was found closed, milliseconds since the Unix epoch.
    pub closed_ms: u64,
    /// When the topic was subscribed again on a new connection.
    pub resumed_ms: u64,
    /// Disconnect code of the close, if there was one.
    pub code: Option<u16>,
    /// Connection attempts it took (1: the first succeeded).
    pub attempts: u32,
    /// Whether the subscribe reply recovered everything missed meanwhile.
    pub recovered: bool,
    /// Publications that reply recovered.
    pub publications: u64,
}

/// Reconnect figures of one subscriber, or summed over all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every reconnect, in order.
    pub events: Vec<Event>,
    /// Publications received inside subscribe replies (recovered).
    pub recovered_publications: u64,
    /// Connection attempts that failed and were retried.
    pub failed_attempts: u64,
    /// First receipts that came after a later publication of the stream (see `ledger::Order`).
    pub out_of_order: u64,
}

impl Tally {
    /// Records a reconnect.
    pub fn resumed(&mut self, event: Event) {
        self.recovered_publications += event.publications;
        self.events.push(event);
    }

    /// Adds another subscriber's figures.
    pub fn add(&mut self, other: Tally) {
        self.events.extend(other.events);
        self.recovered_publications += other.recovered_publications;
        self.failed_attempts += other.failed_attempts;
        self.out_of_order += other.out_of_order;
    }

    /// Reconnects whose subscribe reply said `recovered: true`.
    pub fn recovered(&self) -> u64 {
        self.events.iter().filter(|e| e.recovered).count() as u64
    }
}

/// How fast the reconnecting clients were back: from the first close among `events` to the
/// moment 99% and all of them had resumed; `None` without events.
pub fn storm(events: &[Event], failed_attempts: u64) -> Option<Storm> {
    let first_close_ms = events.iter().map(|e| e.closed_ms).min()?;
    let mut resumed: Vec<u64> = events.iter().map(|e| e.resumed_ms).collect();
    resumed.sort_unstable();
    let n = resumed.len();
    let at = |k: usize| resumed[k.clamp(1, n) - 1].saturating_sub(first_close_ms) as f64 / 1e3;
    Some(Storm {
        clients: n as u64,
        first_close_ms,
        back_99_s: at((n * 99).div_ceil(100)),
        back_100_s: at(n),
        unrecovered: events.iter().filter(|e| !e.recovered).count() as u64,
        failed_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        min: Duration::from_millis(200),
        max: Duration::from_secs(3),
    };

    #[test]
    fn storm_times_run_from_the_first_close() {
        let ev = |closed_ms, resumed_ms, recovered| Event {
            closed_ms,
            resumed_ms,
            recovered,
            ..Event::default()
        };
        let mut events: Vec<Event> = (0..200).map(|k| ev(1_000, 1_100 + k, true)).collect();
        events.push(ev(900, 5_000, false));
        let s = storm(&events, 3).unwrap();
        assert_eq!((s.clients, s.first_close_ms, s.unrecovered), (201, 900, 1));
        // 99% of 201 is 199 clients: the 199th resumed at 1,298 ms.
        assert!((s.back_99_s - 0.398).abs() < 1e-9, "{s:?}");
        assert!((s.back_100_s - 4.1).abs() < 1e-9);
        assert_eq!(storm(&[], 0), None);
    }

    #[test]
    fn first_delay_lies_between_min_and_twice_min() {
        assert_eq!(B.delay(0, 0.0), Duration::from_millis(200));
        assert_eq!(B.delay(0, 0.5), Duration::from_millis(300));
        assert!(B.delay(0, 0.999_999) < Duration::from_millis(400));
    }

    #[test]
    fn delays_grow_with_the_step_and_stay_within_max() {
        assert_eq!(B.delay(2, 0.5), Duration::from_millis(600), "200 + 800/2");
        for step in [0, 1, 3, 5, 10, 31, 32, 1000] {
            for unit in [0.0, 0.3, 0.99, 1.0, 7.0, -1.0] {
                let d = B.delay(step, unit);
                assert!(d >= B.min && d <= B.max, "step {step} unit {unit}: {d:?}");
            }
        }
        assert_eq!(B.delay(1000, 1.0), B.max);
    }

    #[test]
    fn terminal_codes_end_the_subscriber() {
        for code in [
            None,
            Some(1000),
            Some(1001),
            Some(1006),
            Some(3001),
            Some(3499),
        ] {
            assert!(is_advised(code), "{code:?}");
        }
        for code in [3500, 3501, 3999, 4500, 4999] {
            assert!(!is_advised(Some(code)), "{code}");
        }
        assert!(is_advised(Some(4000)));
    }

    #[test]
    fn tallies_add_up() {
        let ev = |recovered, publications| Event {
            recovered,
            publications,
            attempts: 1,
            ..Event::default()
        };
        let mut a = Tally::default();
        a.resumed(ev(true, 3));
        let mut b = Tally {
            failed_attempts: 2,
            out_of_order: 1,
            ..Tally::default()
        };
        b.resumed(ev(false, 0));
        a.add(b);
        assert_eq!(
            (
                a.events.len(),
                a.recovered(),
                a.recovered_publications,
                a.failed_attempts
            ),
            (2, 1, 3, 2)
        );
        assert_eq!(a.out_of_order, 1);
    }
}
