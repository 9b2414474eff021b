//! A bounded map of recently written entries: two generations.
//!
//! Used where a value the store wrote is read back soon after (users' last
//! sequence numbers, [`super::seqs`]; the projections' user rows and
//! unique-user members, [`super::project`]), so that the read costs a hash
//! lookup instead of a search of the LSM's memtable and tables. Each user
//! states why its entries are never older than the keyspace.
//!
//! When the current generation holds `capacity` entries it becomes the
//! previous one and the previous one is dropped: the entries written most
//! recently stay, and memory is at most 2 × `capacity` entries.

use crate::hash::Map;
use std::borrow::Borrow;
use std::hash::Hash;

pub struct Recent<K, V> {
    capacity: usize,
    current: Map<K, V>,
    previous: Map<K, V>,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            current: Map::default(),
            previous: Map::default(),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
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
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        // A stale copy in the previous generation would be found second,
        // but drop it anyway so an entry is held once.
        self.previous.remove(key);
        self.current.insert(K::from(key), value);
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
}
