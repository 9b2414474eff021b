//! A bounded map of recently written entries: two generations.
//!
//! Used where a value the store wrote is read back soon after (users' last
//! sequence numbers, [`super::seqs`]; the projections' user rows and
//! unique-user members, [`super::project`]), so that the read costs a hash
//! lookup instead of a search of the LSM's memtable and tables. Each user
//! states why its entries are never older than the keyspace.
//!
//! When the current generation holds `capacity` entries it becomes the
//! previous one and the previous one is dropped: the entries written (or,
//! through [`Recent::touch`] and [`Recent::update`], used) most recently
//! stay, and memory is at most 2 × `capacity` entries.

use crate::hash::Map;
use std::borrow::Borrow;
use std::hash::Hash;

pub struct Recent<K, V> {
    capacity: usize,
    current: Map<K, V>,
    previous: Map<K, V>,
    /// Times the current generation became the previous one (and the
    /// previous one was dropped): a caller that must know whether an
    /// entry could have been dropped compares it before and after.
    flips: u64,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            current: Map::default(),
            previous: Map::default(),
            flips: 0,
        }
    }

    /// How many times entries were dropped to make room (see the field).
    pub fn flips(&self) -> u64 {
        self.flips
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// The entry for `key`, moved into the current generation if it was in
    /// the previous one: a use keeps an entry as long as a write does, so
    /// the entries used most recently stay.
    pub fn touch<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.current.contains_key(key) {
            return self.current.get(key);
        }
        let (k, v) = self.previous.remove_entry(key)?;
        Some(self.insert_new(k, v))
    }

    /// Changes the entry for `key` (made by `make` if there is none),
    /// which is then in the current generation.
    pub fn update<Q>(&mut self, key: &Q, make: impl FnOnce() -> V, change: impl FnOnce(&mut V))
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.current.get_mut(key) {
            change(v);
            return;
        }
        let (k, mut v) = self
            .previous
            .remove_entry(key)
            .unwrap_or_else(|| (K::from(key), make()));
        change(&mut v);
        self.insert_new(k, v);
    }

    /// Records `value` as the keyspace now holds it for `key`.
    pub fn put<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.current.get_mut(key) {
            *v = value;
            return;
        }
        // A stale copy in the previous generation would be found second,
        // but it goes anyway so that an entry is held once.
        let k = match self.previous.remove_entry(key) {
            Some((k, _)) => k,
            None => K::from(key),
        };
        self.insert_new(k, value);
    }

    /// Inserts a key neither generation holds; a full current generation
    /// becomes the previous one first (and the previous one is dropped).
    fn insert_new(&mut self, key: K, value: V) -> &mut V {
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
            self.flips += 1;
        }
        self.current.entry(key).or_insert(value)
    }

    /// Forgets everything (the keyspace was cleared).
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_keys_are_found_by_slice_and_cleared() {
        // Given entries keyed by bytes
        let mut r: Recent<Box<[u8]>, ()> = Recent::new(4);
        r.put(&b"day/click/u1"[..], ());
        // When looked up by a slice, then found; an unknown key is not
        assert!(r.get(&b"day/click/u1"[..]).is_some());
        assert!(r.get(&b"day/click/u2"[..]).is_none());
        // When cleared, then nothing is found
        r.clear();
        assert_eq!(r.len(), 0);
        assert!(r.get(&b"day/click/u1"[..]).is_none());
    }

    #[test]
    fn an_entry_used_survives_the_flip_that_drops_one_only_written() {
        // Given two generations of two: a and b in the previous one, c current
        let mut r: Recent<Box<str>, u32> = Recent::new(2);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            r.put(k, v);
        }
        // When a is used, then two more writes flip the generations
        assert_eq!(r.touch("a"), Some(&1));
        r.put("d", 4);
        r.put("e", 5);
        // Then a stays and b, written as long ago but not used, is gone
        assert_eq!(r.get("a"), Some(&1));
        assert_eq!(r.get("b"), None);
        assert_eq!(r.touch("b"), None);
        assert!(r.len() <= 4);
    }

    #[test]
    fn an_update_changes_an_entry_of_either_generation_or_makes_one() {
        // Given a in the previous generation
        let mut r: Recent<Box<str>, u32> = Recent::new(1);
        r.put("a", 1);
        r.put("b", 2);
        // When a is updated and c, which is not held, too
        r.update("a", || 0, |v| *v += 10);
        r.update("c", || 7, |v| *v += 1);
        // Then a was changed (not made again) and c was made, then changed
        assert_eq!(r.get("a"), Some(&11));
        assert_eq!(r.get("c"), Some(&8));
        assert_eq!(r.len(), 2);
    }
}
