//! Delivery accounting: live counters shared by all tasks, sharded latency histograms, per-subscriber
//! sequence sets for loss and duplicate detection, and percentile extraction.
//! Nothing here does IO; the summary shape lives in `summary`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms hold, in microseconds (values above are clamped).
const MAX_LATENCY_US: u64 = 120_000_000;

/// Sequence numbers above this are treated as garbage rather than grown into a bitmap.
const MAX_SEQ: u64 = 1 << 32;

/// New empty latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Current wall clock in microseconds since the Unix epoch (the timestamp carried in payloads).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Counters shared by every task of a run, read once a second by the progress monitor.
pub struct Live {
    /// Connections currently established.
    pub connected: AtomicU64,
    /// Completed connection handshakes since the start (churn counts every cycle).
    pub connects: AtomicU64,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Established connections that the server closed or that failed while running.
    pub disconnects: AtomicU64,
    /// Publications accepted by the server.
    pub published: AtomicU64,
    /// Publications that failed (HTTP error, error reply, timeout).
    pub publish_errors: AtomicU64,
    /// Scheduled publications not sent because the in-flight bound was reached.
    pub publish_skipped: AtomicU64,
    /// First receipt of a publication by a subscriber.
    pub delivered: AtomicU64,
    /// Repeated receipt of a publication by the same subscriber.
    pub duplicates: AtomicU64,
    /// Publications received by a subscriber they were not addressed to (or garbage sequence).
    pub misrouted: AtomicU64,
    /// Text messages received that held something (publications, pings).
    pub frames: AtomicU64,
    /// Socket reads that yielded at least one such message.
    pub reads: AtomicU64,
    /// Payload timestamps below this are not recorded in the latency histogram (warmup).
    pub measure_from_us: AtomicU64,
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Live {
    /// Fresh counters with `shards` latency histograms to spread lock contention.
    pub fn new(shards: usize) -> Self {
        Live {
            connected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            publish_skipped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            measure_from_us: AtomicU64::new(0),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds one to a counter.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one delivery latency (send timestamp `sent_us` in payload) into shard `shard`.
    pub fn record_latency(&self, shard: usize, sent_us: u64, now_us: u64) {
        if sent_us < self.measure_from_us.load(Ordering::Relaxed) {
            return;
        }
        let us = now_us.saturating_sub(sent_us).clamp(1, MAX_LATENCY_US);
        let mut h = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    /// Merges and resets the shards: the latencies recorded since the last call.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for shard in &self.shards {
            let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.add(&*h).expect("histograms share bounds");
            h.reset();
        }
        out
    }
}

/// Set of sequence numbers as a growable bitmap; dense small integers are the common case.
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Inserts `seq`; `Some(true)` if new, `Some(false)` if already present, `None` if out of range.
    pub fn insert(&mut self, seq: u64) -> Option<bool> {
        if seq >= MAX_SEQ {
            return None;
        }
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & bit != 0 {
            return Some(false);
        }
        self.words[w] |= bit;
        self.len += 1;
        Some(true)
    }

    /// Number of distinct members.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64u64)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| w as u64 * 64 + b)
        })
    }

    /// Members of `self` missing from `received`.
    pub fn missing_from(&self, received: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, &e)| (e & !received.words.get(i).copied().unwrap_or(0)).count_ones() as u64)
            .sum()
    }
}

/// Which subscriber a publication is addressed to, and its index in that subscriber's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every subscriber receives every publication; the index is the publication number.
    Broadcast,
    /// Publication `p` goes to subscriber `p % n` only, as its `p / n`-th publication.
    Personal {
        /// Number of subscribers.
        n: u64,
    },
}

impl Routing {
    /// Index of publication `seq` in subscriber `sub`'s sequence, or `None` if not addressed to it.
    pub fn index_for(self, sub: u64, seq: u64) -> Option<u64> {
        match self {
            Routing::Broadcast => Some(seq),
            Routing::Personal { n } => (seq % n == sub).then_some(seq / n),
        }
    }

    /// Expected sequence set of each of `n` subscribers, given the accepted publications
    /// (one shared set for broadcast).
    pub fn expected(self, accepted: &SeqSet, subscribers: u64) -> Vec<SeqSet> {
        match self {
            Routing::Broadcast => vec![accepted.clone()],
            Routing::Personal { n } => {
                let mut out = vec![SeqSet::default(); subscribers as usize];
                for p in accepted.iter() {
                    if let Some(set) = out.get_mut((p % n) as usize) {
                        set.insert(p / n);
                    }
                }
                out
            }
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct SubscriberLog {
    /// Distinct publication indexes received.
    pub received: SeqSet,
    /// Receipts of an index already received.
    pub duplicates: u64,
}

impl SubscriberLog {
    /// Records a receipt of `index`: `Some(true)` if it was the first, `Some(false)` for a
    /// duplicate, `None` for an index out of range (garbage, not recorded).
    pub fn record(&mut self, index: u64) -> Option<bool> {
        let first = self.received.insert(index)?;
        if !first {
            self.duplicates += 1;
        }
        Some(first)
    }
}

/// Totals of expected, delivered, lost and duplicated receipts over all subscribers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// Receipts the subscribers should have seen.
    pub expected: u64,
    /// Distinct receipts (including any of publications whose publish call failed).
    pub delivered: u64,
    /// Expected receipts that never arrived.
    pub lost: u64,
    /// Repeated receipts.
    pub duplicates: u64,
}

/// Accounts every subscriber log (`logs[i]` belongs to subscriber `i`; `None` if it never
/// connected, which makes it expect nothing) against the accepted publications.
pub fn account(routing: Routing, accepted: &SeqSet, logs: &[Option<SubscriberLog>]) -> Accounting {
    let expected = routing.expected(accepted, logs.len() as u64);
    let mut acc = Accounting::default();
    for (i, log) in logs.iter().enumerate() {
        let Some(log) = log else { continue };
        let exp = if expected.len() == 1 {
            &expected[0]
        } else {
            &expected[i]
        };
        acc.expected += exp.len();
        acc.lost += exp.missing_from(&log.received);
        acc.delivered += log.received.len();
        acc.duplicates += log.duplicates;
    }
    acc
}

/// Latency percentiles in milliseconds; all `None` when nothing was recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Extracts percentiles from a histogram in microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| Some(us as f64 / 1000.0);
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u64]) -> SeqSet {
        let mut s = SeqSet::default();
        for &i in items {
            s.insert(i);
        }
        s
    }

    #[test]
    fn duplicates_are_counted_once_per_repeat() {
        let mut log = SubscriberLog::default();
        assert_eq!(log.record(3), Some(true));
        assert_eq!(log.record(3), Some(false));
        assert_eq!(log.record(3), Some(false));
        assert_eq!(log.record(200), Some(true));
        assert_eq!((log.received.len(), log.duplicates), (2, 2));
        assert_eq!(
            log.record(MAX_SEQ),
            None,
            "garbage sequence is not recorded"
        );
    }

    #[test]
    fn broadcast_losses_are_per_subscriber() {
        let accepted = set(&[0, 1, 2, 3, 4, 70]);
        let full = SubscriberLog {
            received: set(&[0, 1, 2, 3, 4, 70]),
            duplicates: 0,
        };
        let gaps = SubscriberLog {
            received: set(&[0, 2, 4]),
            duplicates: 1,
        };
        let acc = account(
            Routing::Broadcast,
            &accepted,
            &[Some(full), None, Some(gaps)],
        );
        assert_eq!(
            acc,
            Accounting {
                expected: 12,
                delivered: 9,
                lost: 3,
                duplicates: 1
            }
        );
    }

    #[test]
    fn failed_publications_are_not_expected() {
        // Publication 1 failed at the API but reached the subscriber anyway: delivered, not lost.
        let accepted = set(&[0, 2]);
        let log = SubscriberLog {
            received: set(&[0, 1]),
            duplicates: 0,
        };
        let acc = account(Routing::Broadcast, &accepted, &[Some(log)]);
        assert_eq!((acc.expected, acc.delivered, acc.lost), (2, 2, 1));
    }

    #[test]
    fn personal_routing_splits_round_robin() {
        let r = Routing::Personal { n: 3 };
        assert_eq!(r.index_for(1, 4), Some(1));
        assert_eq!(r.index_for(2, 4), None);
        let accepted = set(&[0, 1, 2, 3, 4, 5, 6]);
        let logs = vec![
            Some(SubscriberLog {
                received: set(&[0, 1, 2]),
                duplicates: 0,
            }),
            Some(SubscriberLog {
                received: set(&[0]),
                duplicates: 2,
            }),
            Some(SubscriberLog {
                received: set(&[]),
                duplicates: 0,
            }),
        ];
        let acc = account(r, &accepted, &logs);
        assert_eq!(
            acc,
            Accounting {
                expected: 7,
                delivered: 4,
                lost: 3,
                duplicates: 2
            }
        );
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_ms() {
        let mut h = new_histogram();
        assert_eq!(Percentiles::from_histogram(&h), Percentiles::default());
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert!((p.p50.unwrap() - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p90.unwrap() - 9.0).abs() < 0.01, "{p:?}");
        assert!((p.p99.unwrap() - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.p999.unwrap() - 9.99).abs() < 0.01, "{p:?}");
        assert!((p.max.unwrap() - 10.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn warmup_latencies_are_skipped_and_intervals_reset() {
        let live = Live::new(4);
        live.measure_from_us.store(1_000, Ordering::Relaxed);
        live.record_latency(0, 500, 2_000);
        live.record_latency(5, 1_500, 2_000);
        let h = live.take_interval();
        assert_eq!((h.len(), h.max()), (1, 500));
        assert!(live.take_interval().is_empty());
    }

    #[test]
    fn seqset_iterates_in_order() {
        let s = set(&[130, 1, 64]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 64, 130]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.missing_from(&set(&[1, 64, 65])), 1);
    }
}
