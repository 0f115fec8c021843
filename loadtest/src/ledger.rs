//! Loss, duplicate and order accounting: which publications each subscriber should see
//! (`Routing`), what it saw (`SubscriberLog`, a bitmap of sequence numbers), in which order
//! (`Order`) and the totals over all of them. Pure data; latency and live counters live in `stats`.

use crate::mix::{Kind, Mix};

/// Sequence numbers above this are treated as garbage rather than grown into a bitmap.
const MAX_SEQ: u64 = 1 << 32;

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

    /// Members of `self` missing from `received`, in increasing order.
    pub fn iter_missing_from<'a>(&'a self, received: &'a SeqSet) -> impl Iterator<Item = u64> + 'a {
        self.iter().filter(|&i| {
            let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
            received.words.get(w).is_none_or(|word| word & bit == 0)
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
    /// The `fleet` scenario: each subscriber's topic and personal publications (`mix`).
    Fleet(Mix),
}

impl Routing {
    /// Index of publication `seq` in subscriber `sub`'s sequence, or `None` if not addressed to it.
    pub fn index_for(self, sub: u64, seq: u64) -> Option<u64> {
        match self {
            Routing::Broadcast => Some(seq),
            Routing::Personal { n } => (seq % n == sub).then_some(seq / n),
            Routing::Fleet(mix) => mix.index_for(sub, seq),
        }
    }

    /// Receipts the accepted publications call for among `connected` of `subscribers`.
    pub fn expected_count(self, accepted: &SeqSet, connected: u64, subscribers: u64) -> u64 {
        match self {
            Routing::Broadcast => accepted.len() * connected,
            Routing::Personal { n } => accepted.len() * connected / n.max(1),
            Routing::Fleet(mix) => {
                let all: u64 = accepted.iter().map(|s| mix.recipients(s)).sum();
                all * connected / subscribers.max(1)
            }
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
            Routing::Fleet(mix) => {
                let mut out = vec![SeqSet::default(); subscribers as usize];
                let per_topic = mix.n.div_ceil(mix.topics);
                for p in accepted.iter() {
                    let index = |sub| mix.index_for(sub, p);
                    let recipients: Vec<u64> = match mix.kind(p) {
                        Kind::Personal(q) => vec![q % mix.n],
                        Kind::Topic(r) => (0..per_topic)
                            .map(|k| r % mix.topics + k * mix.topics)
                            .collect(),
                    };
                    for sub in recipients {
                        if let (Some(set), Some(i)) = (out.get_mut(sub as usize), index(sub)) {
                            set.insert(i);
                        }
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

/// Arrival order of one subscriber's publications by stream position: the channel offset
/// when the server gives one (the order the server stored them in, whatever order the load
/// generator's concurrent publish calls landed in), else the publication number. A first
/// receipt below a position already seen is out of order; duplicates are the log's business.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    last: Option<u64>,
    /// First receipts that came after a higher position.
    pub out_of_order: u64,
}

impl Order {
    /// Notes the first receipt of a publication at stream position `position`; `false` (and
    /// counted) if a higher position was seen before it.
    pub fn observe(&mut self, position: u64) -> bool {
        match self.last {
            Some(last) if position < last => {
                self.out_of_order += 1;
                false
            }
            _ => {
                self.last = Some(position);
                true
            }
        }
    }

    /// Forgets the positions seen: the stream restarted (a new epoch), so its offsets did too.
    pub fn restart(&mut self) {
        self.last = None;
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

/// The first `max` subscribers that missed publications: their index and the indexes they
/// missed, as `a-b` ranges (at most 8 quoted).
pub fn losses(
    routing: Routing,
    accepted: &SeqSet,
    logs: &[Option<SubscriberLog>],
    max: usize,
) -> Vec<(usize, u64, String)> {
    let expected = routing.expected(accepted, logs.len() as u64);
    let mut out = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let Some(log) = log else { continue };
        let exp = expected.get(i).unwrap_or(&expected[0]);
        let missing: Vec<u64> = exp.iter_missing_from(&log.received).collect();
        if missing.is_empty() {
            continue;
        }
        out.push((i, missing.len() as u64, ranges(&missing, 8)));
        if out.len() >= max {
            break;
        }
    }
    out
}

/// `1-3,7` for `[1, 2, 3, 7]`, at most `max` ranges quoted.
fn ranges(sorted: &[u64], max: usize) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if parts.len() == max {
            parts.push("...".to_owned());
            break;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
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
    fn order_counts_receipts_below_a_position_already_seen() {
        let mut o = Order::default();
        assert!(o.observe(5));
        assert!(o.observe(6));
        assert!(!o.observe(4), "4 after 6");
        assert!(o.observe(9), "a gap is a loss, not disorder");
        assert!(!o.observe(7));
        assert_eq!(o.out_of_order, 2);
        o.restart();
        assert!(o.observe(1), "a new epoch starts over");
        assert_eq!(o.out_of_order, 2);
    }

    #[test]
    fn losses_name_the_subscriber_and_the_ranges() {
        let accepted = set(&[0, 1, 2, 3, 4, 5, 9]);
        let logs = vec![
            Some(SubscriberLog {
                received: set(&[0, 1, 2, 3, 4, 5, 9]),
                ..SubscriberLog::default()
            }),
            None,
            Some(SubscriberLog {
                received: set(&[0, 4]),
                ..SubscriberLog::default()
            }),
        ];
        let l = losses(Routing::Broadcast, &accepted, &logs, 5);
        assert_eq!(l, vec![(2, 5, "1-3,5,9".to_owned())]);
        assert_eq!(ranges(&[1, 3, 5, 7], 2), "1,3,...");
    }

    #[test]
    fn fleet_subscribers_expect_their_topic_and_their_own_publications() {
        // 5 subscribers on 2 topics (0, 2, 4 on topic 0; 1, 3 on topic 1), one personal
        // publication for every topic publication.
        let mix = Mix::new(5, 2, 100.0, 100.0).unwrap();
        let r = Routing::Fleet(mix);
        let accepted = set(&(0..20).collect::<Vec<_>>());
        let expected = r.expected(&accepted, 5);
        let counts: Vec<u64> = expected.iter().map(SeqSet::len).collect();
        // 10 topic publications (5 per topic), 10 personal ones (2 per subscriber).
        assert_eq!(counts, [7, 7, 7, 7, 7]);
        assert_eq!(r.expected_count(&accepted, 5, 5), 35);
        let logs: Vec<Option<SubscriberLog>> = (0..5)
            .map(|sub| {
                let mut log = SubscriberLog::default();
                for seq in 0..20 {
                    if let Some(i) = r.index_for(sub, seq) {
                        log.record(i);
                    }
                }
                Some(log)
            })
            .collect();
        let acc = account(r, &accepted, &logs);
        assert_eq!((acc.expected, acc.delivered, acc.lost), (35, 35, 0));
    }

    #[test]
    fn seqset_iterates_in_order() {
        let s = set(&[130, 1, 64]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 64, 130]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.missing_from(&set(&[1, 64, 65])), 1);
    }
}
