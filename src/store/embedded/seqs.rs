//! The last sequence numbers of recently written users, in memory.
//!
//! Every group appended needs its user's last sequence number under the
//! writer lock: the store numbers the group after it
//! ([`crate::store::Numbering::Store`], what the aggregates ask for) or
//! checks the caller's expectation against it. A point lookup in the
//! `last_seq` keyspace per group would be a probe of the LSM's tables per
//! event with many users.
//!
//! The cache is filled **only under the store's writer lock**: after a
//! commit, with the sequence numbers it wrote, and when the writer itself
//! read a user's row. Only that lock's holder writes `last_seq`, and this
//! process is the store's only writer (the embedded store is local), so
//! an entry is never older than the keyspace while the lock is held: the
//! append, which runs under it, may trust it. A reader outside the lock
//! (`EventStore::last_seq`) may see an entry a commit is about to
//! replace, which is no worse than reading the keyspace a moment earlier.
//!
//! Bounded by two generations (see [`super::recent`]): the users written
//! most recently stay, about 50 bytes each (a short key in place, see
//! [`crate::hash::InlineStr`], the seq and the table's own overhead).

/// Users' last sequence numbers, by user id.
pub type SeqCache = super::recent::Recent<crate::hash::InlineStr, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_value_wins_across_generations() {
        let mut c = SeqCache::new(2);
        c.put("a", 1);
        c.put("b", 1);
        c.put("c", 1); // rotates: a and b are now the previous generation
        assert_eq!(c.get("a"), Some(&1));
        c.put("a", 2); // moves to the current generation
        assert_eq!(c.get("a"), Some(&2));
        assert_eq!(c.len(), 3, "a is held once");
        c.put("a", 3);
        assert_eq!(c.get("a"), Some(&3));
    }

    #[test]
    fn memory_stays_within_two_generations() {
        let mut c = SeqCache::new(100);
        for i in 0..10_000u64 {
            c.put(format!("u{i}").as_str(), i);
            assert!(c.len() <= 200);
        }
        // The most recent users stay; the oldest are gone.
        assert_eq!(c.get("u9999"), Some(&9999));
        assert_eq!(c.get("u9850"), Some(&9850));
        assert_eq!(c.get("u0"), None);
    }
}
