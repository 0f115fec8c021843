//! A map from channel name to a value for the few channels one connection
//! uses: a vector searched linearly, sized exactly while it holds one entry
//! (a hash map reserves room for several, and most connections have one
//! or two channels).

use std::sync::Arc;

/// Channel name -> `V`, in insertion order.
#[derive(Debug)]
pub struct SmallMap<V> {
    entries: Vec<(Arc<str>, V)>,
}

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }
}

impl<V> SmallMap<V> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// The value of `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: Arc<str>, value: V) -> Option<V> {
        if let Some(old) = self.get_mut(&key) {
            return Some(std::mem::replace(old, value));
        }
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(1);
        }
        self.entries.push((key, value));
        None
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let index = self.entries.iter().position(|(k, _)| &**k == key)?;
        let (_, value) = self.entries.swap_remove(index);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_and_frees_itself_when_empty() {
        let mut map = SmallMap::default();
        assert_eq!(map.insert(Arc::from("a"), 1), None);
        assert_eq!(map.entries.capacity(), 1, "one entry, no spare room");
        assert_eq!(map.insert(Arc::from("b"), 2), None);
        assert_eq!(map.insert(Arc::from("a"), 3), Some(1));
        assert_eq!(
            (map.get("a"), map.get("b"), map.get("c")),
            (Some(&3), Some(&2), None)
        );
        *map.get_mut("b").unwrap() += 10;
        assert_eq!(map.values().sum::<i32>(), 15);
        assert_eq!(map.remove("a"), Some(3));
        assert_eq!(map.remove("a"), None);
        assert_eq!(map.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(map.remove("b"), Some(12));
        assert!(map.is_empty());
        assert_eq!(map.entries.capacity(), 0);
    }
}
