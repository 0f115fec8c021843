//! One channel's local subscribers, by connection number. Most channels on a
//! node (personal ones above all) have a single subscriber: it is kept inline,
//! and only a second one brings a hash table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::outbox::Outbox;

/// Connection number -> outbox.
#[derive(Debug)]
pub enum Subscribers {
    /// The channel's only subscriber.
    One(u64, Arc<Outbox>),
    /// Several (possibly none, for a moment, after removals).
    Many(HashMap<u64, Arc<Outbox>>),
}

impl Subscribers {
    /// A channel with `conn` as its only subscriber.
    pub fn new(conn: u64, outbox: Arc<Outbox>) -> Subscribers {
        Subscribers::One(conn, outbox)
    }

    /// Adds or replaces a subscriber; true when it was not there.
    pub fn insert(&mut self, conn: u64, outbox: Arc<Outbox>) -> bool {
        match self {
            Subscribers::One(only, existing) if *only == conn => {
                *existing = outbox;
                false
            }
            Subscribers::One(only, existing) => {
                let map = HashMap::from([(*only, existing.clone()), (conn, outbox)]);
                *self = Subscribers::Many(map);
                true
            }
            Subscribers::Many(map) => map.insert(conn, outbox).is_none(),
        }
    }

    /// Removes a subscriber; returns `(whether it was there, whether none is left)`.
    pub fn remove(&mut self, conn: u64) -> (bool, bool) {
        match self {
            Subscribers::One(only, _) => (*only == conn, *only == conn),
            Subscribers::Many(map) => {
                let removed = map.remove(&conn).is_some();
                (removed, map.is_empty())
            }
        }
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        match self {
            Subscribers::One(..) => 1,
            Subscribers::Many(map) => map.len(),
        }
    }

    /// Every subscriber's outbox.
    pub fn outboxes(&self) -> impl Iterator<Item = &Arc<Outbox>> {
        let (one, many) = match self {
            Subscribers::One(_, outbox) => (Some(outbox), None),
            Subscribers::Many(map) => (None, Some(map.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subscriber_inline_then_a_table() {
        let (a, b) = (Outbox::new(1), Outbox::new(1));
        let mut subs = Subscribers::new(1, a.clone());
        assert!(matches!(subs, Subscribers::One(1, _)));
        assert!(!subs.insert(1, a.clone()), "same connection again");
        assert!(subs.insert(2, b.clone()));
        assert_eq!(subs.len(), 2);
        let mut seen: Vec<*const Outbox> = subs.outboxes().map(Arc::as_ptr).collect();
        seen.sort();
        let mut want = vec![Arc::as_ptr(&a), Arc::as_ptr(&b)];
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(subs.remove(3), (false, false));
        assert_eq!(subs.remove(1), (true, false));
        assert_eq!(subs.remove(2), (true, true));
    }

    #[test]
    fn the_only_subscriber_leaves() {
        let mut subs = Subscribers::new(7, Outbox::new(1));
        assert_eq!(subs.remove(8), (false, false));
        assert_eq!(subs.remove(7), (true, true));
    }
}
