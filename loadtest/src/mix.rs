//! The `fleet` scenario's traffic: which topic each subscriber holds, how the one sequence of
//! publication numbers is split between the topics and the personal channels (in proportion to
//! the two rates, deterministically), and where each publication lands in its recipients'
//! sequences. Pure arithmetic; publishing and accounting use it through `publish` and `ledger`.

/// Topic and personal traffic of one load process: `n` subscribers, subscriber i on topic
/// `i % topics`, publications split between the topics and the personal channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Subscribers of this process.
    pub n: u64,
    /// Topics they are spread over (subscriber i holds topic `i % topics`).
    pub topics: u64,
    /// Personal publications in every `cycle` publications.
    personal: u64,
    /// Length of the repeating pattern of publication kinds.
    cycle: u64,
}

/// What publication number `seq` is, and its rank among the publications of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The `rank`-th topic publication, to topic `rank % topics`.
    Topic(u64),
    /// The `rank`-th personal publication, to subscriber `rank % n`.
    Personal(u64),
}

/// Rates are compared in thousandths of a publication per second.
const RATE_SCALE: f64 = 1000.0;

impl Mix {
    /// The mix of `topic_rate` and `personal_rate` (publications per second) for `n`
    /// subscribers over `topics` topics; `None` if both rates are zero or a count is zero.
    pub fn new(n: u64, topics: u64, topic_rate: f64, personal_rate: f64) -> Option<Mix> {
        let scaled = |r: f64| (r.max(0.0) * RATE_SCALE).round() as u64;
        let (t, p) = (scaled(topic_rate), scaled(personal_rate));
        if n == 0 || topics == 0 || t + p == 0 {
            return None;
        }
        let g = gcd(t, p);
        Some(Mix {
            n,
            topics,
            personal: p / g,
            cycle: (t + p) / g,
        })
    }

    /// The kind of publication `seq` and its rank among its kind. Within each cycle the
    /// personal ones are spread evenly (Bresenham), so both streams keep their rate at any scale.
    pub fn kind(&self, seq: u64) -> Kind {
        let (c, p) = (self.cycle as u128, self.personal as u128);
        let (round, pos) = (seq as u128 / c, seq as u128 % c);
        let before = pos * p / c;
        let personal_rank = round * p + before;
        if (pos + 1) * p / c > before {
            Kind::Personal(personal_rank as u64)
        } else {
            Kind::Topic((seq as u128 - personal_rank) as u64)
        }
    }

    /// Topic number (before any offset) held by subscriber `sub`.
    pub fn topic_of(&self, sub: u64) -> u64 {
        sub % self.topics
    }

    /// Subscribers holding topic `topic`.
    pub fn subscribers_of(&self, topic: u64) -> u64 {
        self.n / self.topics + u64::from(topic < self.n % self.topics)
    }

    /// Recipients of publication `seq`.
    pub fn recipients(&self, seq: u64) -> u64 {
        match self.kind(seq) {
            Kind::Topic(r) => self.subscribers_of(r % self.topics),
            Kind::Personal(_) => 1,
        }
    }

    /// Index of publication `seq` in subscriber `sub`'s sequence (topic publications even,
    /// personal ones odd, both dense), or `None` if it is not addressed to `sub`.
    pub fn index_for(&self, sub: u64, seq: u64) -> Option<u64> {
        match self.kind(seq) {
            Kind::Topic(r) => {
                (r % self.topics == self.topic_of(sub)).then_some(r / self.topics * 2)
            }
            Kind::Personal(q) => (q % self.n == sub).then_some(q / self.n * 2 + 1),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_rates() {
        // 1,000 topic and 5,000 personal publications per second: 5 of every 6 are personal.
        let m = Mix::new(100, 10, 1000.0, 5000.0).unwrap();
        let kinds: Vec<Kind> = (0..600).map(|s| m.kind(s)).collect();
        let personal = kinds
            .iter()
            .filter(|k| matches!(k, Kind::Personal(_)))
            .count();
        assert_eq!(personal, 500);
        // Ranks are dense and in order within each kind.
        let (mut t, mut p) = (0, 0);
        for k in kinds {
            match k {
                Kind::Topic(r) => {
                    assert_eq!(r, t);
                    t += 1;
                }
                Kind::Personal(r) => {
                    assert_eq!(r, p);
                    p += 1;
                }
            }
        }
        assert_eq!(Mix::new(1, 1, 0.0, 0.0), None);
        let only_topics = Mix::new(4, 2, 10.0, 0.0).unwrap();
        assert_eq!(only_topics.kind(7), Kind::Topic(7));
    }

    #[test]
    fn every_publication_reaches_exactly_its_recipients_once() {
        let m = Mix::new(7, 3, 300.0, 200.0).unwrap();
        for seq in 0..200 {
            let hits: Vec<(u64, u64)> = (0..7)
                .filter_map(|sub| m.index_for(sub, seq).map(|i| (sub, i)))
                .collect();
            assert_eq!(hits.len() as u64, m.recipients(seq), "seq {seq}");
        }
        // Each subscriber's indexes are distinct.
        for sub in 0..7 {
            let mut idx: Vec<u64> = (0..200).filter_map(|s| m.index_for(sub, s)).collect();
            let len = idx.len();
            idx.dedup();
            assert_eq!(idx.len(), len);
        }
        assert_eq!((0..3).map(|t| m.subscribers_of(t)).sum::<u64>(), 7);
    }
}
