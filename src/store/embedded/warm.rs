//! Projection rows written recently, kept in memory so that an apply's
//! read-back is a hash lookup instead of an LSM point read.
//!
//! An apply reads back rows it wrote before: a user's stats row, to add
//! the new events to it, and whether the user is already a member of a
//! daily bucket (a unique user). As LSM point lookups (a memtable search,
//! then a filter and block-cache probe per table) those reads were most
//! of an apply's cost.
//!
//! Both caches are keyed by user and keep the users used most recently
//! ([`Recent`], two generations). Memberships are held per user as the
//! list of buckets the user is known to be in, each bucket's key shared
//! ([`Memberships::bucket`]): a user's few memberships cost one entry,
//! not one copy of the bucket key and the user id each.
//!
//! Only [`super::Inner::apply`] writes the `users` rows and the daily
//! members, one apply per projection at a time (it holds the
//! projection's checkpoint lock), and it puts what it wrote here only
//! after its rows were put in place; [`super::Inner::reset`] clears them
//! with the keyspace. So an entry is never older than the projection, and
//! an apply may trust it. A member is only ever added, so a membership
//! found here is in the projection.

use super::recent::Recent;
use crate::hash::Map;
use std::sync::{Arc, Mutex, MutexGuard};

/// Users whose stats rows are kept, per generation (two at most: 131,072
/// to 262,144 users, about 30 MiB at most, an estimate).
const WARM_USERS: usize = 131_072;
/// Users whose daily memberships are kept, per generation (about 30 MiB
/// at most for two with a few memberships each, an estimate).
const WARM_MEMBER_USERS: usize = 131_072;
/// Memberships kept per user, the latest (a user active for days would
/// otherwise hold every day's; an older one is looked up again if needed).
const BUCKETS_PER_USER: usize = 8;
/// Distinct bucket keys shared at most; past it the table starts again
/// (entries keep their keys, later ones get new copies).
const SHARED_BUCKETS: usize = 4_096;

/// A daily bucket's row key, shared by the memberships that name it.
pub(super) type Bucket = Arc<[u8]>;

pub(super) struct Warm {
    users: Mutex<Users>,
    members: Mutex<Memberships>,
}

/// User id to its encoded stats row.
pub(super) type Users = Recent<Box<str>, Box<[u8]>>;

impl Default for Warm {
    fn default() -> Self {
        Self {
            users: Mutex::new(Recent::new(WARM_USERS)),
            members: Mutex::new(Memberships::new(WARM_MEMBER_USERS)),
        }
    }
}

impl Warm {
    /// A panic while a map was held cannot have left a wrong entry (each
    /// update is one insert of a committed value), so a poisoned lock is
    /// taken over.
    pub(super) fn users(&self) -> MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn members(&self) -> MutexGuard<'_, Memberships> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The daily buckets users are known to be members of.
pub(super) struct Memberships {
    users: Recent<Box<str>, Vec<Bucket>>,
    buckets: Map<Box<[u8]>, Bucket>,
}

impl Memberships {
    fn new(users: usize) -> Self {
        Self {
            users: Recent::new(users),
            buckets: Map::default(),
        }
    }

    /// The shared key of the bucket whose row key is `row`.
    pub(super) fn bucket(&mut self, row: &[u8]) -> Bucket {
        if let Some(b) = self.buckets.get(row) {
            return Arc::clone(b);
        }
        if self.buckets.len() >= SHARED_BUCKETS {
            self.buckets.clear();
        }
        let b: Bucket = Arc::from(row);
        self.buckets.insert(Box::from(row), Arc::clone(&b));
        b
    }

    /// Whether `user` is known to be a member of `bucket` (a use: the
    /// user's entry is kept as recently used).
    pub(super) fn contains(&mut self, user: &str, bucket: &Bucket) -> bool {
        self.users
            .touch(user)
            .is_some_and(|held| held.iter().any(|b| same(b, bucket)))
    }

    /// Records that `user` is a member of `bucket` in the projection.
    pub(super) fn add(&mut self, user: &str, bucket: Bucket) {
        self.users.update(user, Vec::new, |held| {
            if !held.iter().any(|b| same(b, &bucket)) {
                if held.len() >= BUCKETS_PER_USER {
                    held.remove(0);
                }
                held.push(bucket);
            }
        });
    }

    /// Forgets everything (the keyspace was cleared).
    pub(super) fn clear(&mut self) {
        self.users.clear();
        self.buckets.clear();
    }
}

/// The same bucket: most often the same shared key, else equal bytes (a
/// key made again after the table started over).
fn same(a: &Bucket, b: &Bucket) -> bool {
    Arc::ptr_eq(a, b) || a[..] == b[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_membership_is_known_for_its_user_and_bucket_only() {
        // Given u1 added to bucket a
        let mut m = Memberships::new(4);
        let (a, b) = (m.bucket(b"a"), m.bucket(b"b"));
        m.add("u1", a.clone());
        // Then u1 is in a, not in b; u2 is in neither
        assert!(m.contains("u1", &a));
        assert!(!m.contains("u1", &b));
        assert!(!m.contains("u2", &a));
        // When u1 is added to b too (and to a again), then it is in both
        m.add("u1", b.clone());
        m.add("u1", a.clone());
        assert!(m.contains("u1", &a) && m.contains("u1", &b));
        assert_eq!(m.users.get("u1").map(Vec::len), Some(2));
    }

    #[test]
    fn a_user_keeps_only_the_latest_memberships() {
        // Given a user added to one bucket more than it keeps
        let mut m = Memberships::new(4);
        let buckets: Vec<Bucket> = (0..=BUCKETS_PER_USER)
            .map(|i| m.bucket(format!("day {i}").as_bytes()))
            .collect();
        for b in &buckets {
            m.add("u1", b.clone());
        }
        // Then the first is forgotten (looked up again), the others known
        assert!(!m.contains("u1", &buckets[0]));
        assert!(buckets[1..].iter().all(|b| m.contains("u1", b)));
    }

    #[test]
    fn buckets_are_shared_and_equal_after_the_table_starts_again() {
        // Given a bucket's shared key
        let mut m = Memberships::new(4);
        let a = m.bucket(b"a");
        assert!(Arc::ptr_eq(&a, &m.bucket(b"a")));
        m.add("u1", a);
        // When the table fills and starts again, then a new copy of the
        // key still finds the membership
        for i in 0..SHARED_BUCKETS {
            m.bucket(format!("other {i}").as_bytes());
        }
        let again = m.bucket(b"a");
        assert!(m.contains("u1", &again));
    }

    #[test]
    fn clear_forgets_every_membership() {
        let mut m = Memberships::new(4);
        let a = m.bucket(b"a");
        m.add("u1", a.clone());
        m.clear();
        assert!(!m.contains("u1", &a));
    }
}
