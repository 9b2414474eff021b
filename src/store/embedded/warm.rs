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
//!
//! A membership not found here is looked up in the projection (a key
//! nearly always absent: a filter probe per table), except in a bucket
//! known complete: one whose row the projection did not have when an
//! apply first met it, every member since added here, none dropped since
//! ([`Memberships::membership`]). A day's buckets are new each day, so
//! the first event of each user in each of them costs no lookup.

use super::recent::Recent;
use crate::hash::{InlineStr, Map};
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

/// User id to its encoded stats row (inline: no second cache miss, no
/// allocation per row written).
pub(super) type Users = Recent<InlineStr, super::keys::UserRow>;

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

    /// The memberships are held from an apply's reads through its commit
    /// to its additions here: a panic on the way may leave a member in the
    /// projection and not here, so a poisoned lock is taken over with
    /// every bucket made incomplete (see [`Memberships::membership`]).
    pub(super) fn members(&self) -> MutexGuard<'_, Memberships> {
        self.members.lock().unwrap_or_else(|poisoned| {
            let mut held = poisoned.into_inner();
            held.all_incomplete();
            self.members.clear_poison();
            held
        })
    }
}

/// The daily buckets users are known to be members of, and the buckets
/// of which every member is known (see [`Memberships::membership`]).
pub(super) struct Memberships {
    users: Recent<InlineStr, Vec<Bucket>>,
    buckets: Map<Box<[u8]>, Shared>,
}

/// A bucket's shared key, and whether every member of the bucket in the
/// projection is known here.
struct Shared {
    bucket: Bucket,
    complete: bool,
}

/// Whether a user is a member of a bucket, as far as memory can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Membership {
    Member,
    /// Not a member: the bucket is complete here (see
    /// [`Memberships::membership`]).
    NotMember,
    /// Not known here: the projection has the answer.
    Unknown,
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
        if let Some(s) = self.buckets.get(row) {
            return Arc::clone(&s.bucket);
        }
        if self.buckets.len() >= SHARED_BUCKETS {
            self.buckets.clear();
        }
        let bucket: Bucket = Arc::from(row);
        let shared = Shared {
            bucket: Arc::clone(&bucket),
            complete: false,
        };
        self.buckets.insert(Box::from(row), shared);
        bucket
    }

    /// Records that the projection has no row for `bucket`, so no member
    /// of it either (an apply puts a bucket's members and its row in one
    /// commit): from now on the bucket is complete here, every member the
    /// projection gets being added here after its commit, until memory
    /// drops a membership (see [`Memberships::membership`]).
    pub(super) fn empty_in_projection(&mut self, bucket: &Bucket) {
        if let Some(s) = self.buckets.get_mut(&bucket[..]) {
            s.complete = true;
        }
    }

    /// Whether `user` is a member of `bucket` (a use: the user's entry is
    /// kept as recently used). `NotMember` only for a complete bucket:
    /// one empty in the projection when it was marked so, to which every
    /// member since was added here, and of which no membership was
    /// dropped since (a generation of users dropped, a user's oldest
    /// membership dropped, the shared keys started again: each makes the
    /// buckets it may concern incomplete). Else the projection is asked.
    pub(super) fn membership(&mut self, user: &str, bucket: &Bucket) -> Membership {
        if self.contains(user, bucket) {
            Membership::Member
        } else if self.buckets.get(&bucket[..]).is_some_and(|s| s.complete) {
            Membership::NotMember
        } else {
            Membership::Unknown
        }
    }

    /// Whether `user` is known to be a member of `bucket` (a use: the
    /// user's entry is kept as recently used).
    fn contains(&mut self, user: &str, bucket: &Bucket) -> bool {
        let flips = self.users.flips();
        let found = self
            .users
            .touch(user)
            .is_some_and(|held| held.iter().any(|b| same(b, bucket)));
        if self.users.flips() != flips {
            self.all_incomplete();
        }
        found
    }

    /// Records that `user` is a member of `bucket` in the projection.
    pub(super) fn add(&mut self, user: &str, bucket: Bucket) {
        let flips = self.users.flips();
        let mut dropped = None;
        self.users.update(user, Vec::new, |held| {
            if !held.iter().any(|b| same(b, &bucket)) {
                if held.len() >= BUCKETS_PER_USER {
                    dropped = Some(held.remove(0));
                }
                held.push(bucket);
            }
        });
        if self.users.flips() != flips {
            self.all_incomplete();
        } else if let Some(s) = dropped.and_then(|d| self.buckets.get_mut(&d[..])) {
            s.complete = false;
        }
    }

    /// Memberships may have been dropped from any bucket.
    fn all_incomplete(&mut self) {
        for s in self.buckets.values_mut() {
            s.complete = false;
        }
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

    /// One bucket more than a user's memberships kept.
    fn more_buckets_than_kept(m: &mut Memberships) -> Vec<Bucket> {
        (0..=BUCKETS_PER_USER)
            .map(|i| m.bucket(format!("day {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn a_user_keeps_only_the_latest_memberships() {
        // Given a user added to one bucket more than it keeps
        let mut m = Memberships::new(4);
        let buckets = more_buckets_than_kept(&mut m);
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
    fn a_bucket_empty_in_the_projection_knows_its_non_members() {
        // Given bucket a empty in the projection, and b not known to be
        let mut m = Memberships::new(4);
        let (a, b) = (m.bucket(b"a"), m.bucket(b"b"));
        m.empty_in_projection(&a);
        // Then a user not added is not a member of a, and unknown for b
        assert_eq!(m.membership("u1", &a), Membership::NotMember);
        assert_eq!(m.membership("u1", &b), Membership::Unknown);
        // When u1 is added to both, then it is a member of both, and
        // another user still not a member of a
        m.add("u1", a.clone());
        m.add("u1", b.clone());
        assert_eq!(m.membership("u1", &a), Membership::Member);
        assert_eq!(m.membership("u1", &b), Membership::Member);
        assert_eq!(m.membership("u2", &a), Membership::NotMember);
        assert_eq!(m.membership("u2", &b), Membership::Unknown);
    }

    #[test]
    fn a_generation_of_users_dropped_makes_every_bucket_incomplete() {
        // Given a complete bucket with u1 a member, kept two users a generation
        let mut m = Memberships::new(2);
        let a = m.bucket(b"a");
        m.empty_in_projection(&a);
        m.add("u1", a.clone());
        // When enough users are added for u1's generation to be dropped
        for user in ["u2", "u3", "u4", "u5"] {
            m.add(user, a.clone());
        }
        assert!(m.users.get("u1").is_none(), "u1 dropped");
        // Then u1 is unknown, not a non-member
        assert_eq!(m.membership("u1", &a), Membership::Unknown);
    }

    #[test]
    fn a_users_oldest_membership_dropped_makes_that_bucket_incomplete() {
        // Given a user added to one complete bucket more than it keeps
        let mut m = Memberships::new(4);
        let buckets = more_buckets_than_kept(&mut m);
        for b in &buckets {
            m.empty_in_projection(b);
            m.add("u1", b.clone());
        }
        // Then its first membership, dropped, is unknown; the other buckets
        // stay complete
        assert_eq!(m.membership("u1", &buckets[0]), Membership::Unknown);
        assert_eq!(m.membership("u2", &buckets[0]), Membership::Unknown);
        assert_eq!(m.membership("u2", &buckets[1]), Membership::NotMember);
    }

    #[test]
    fn shared_keys_started_again_and_a_poisoned_lock_forget_completeness() {
        // Given a complete bucket
        let warm = Warm::default();
        let a = warm.members().bucket(b"a");
        warm.members().empty_in_projection(&a);
        assert_eq!(warm.members().membership("u1", &a), Membership::NotMember);
        // When a panic leaves the lock poisoned, then it is incomplete
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = warm.members();
            panic!("an apply failing between its commit and its additions");
        }));
        assert!(panicked.is_err());
        assert_eq!(warm.members().membership("u1", &a), Membership::Unknown);
        // Given it complete again, when the shared keys start again, then
        // it is incomplete too
        let mut m = warm.members();
        m.empty_in_projection(&a);
        assert_eq!(m.membership("u1", &a), Membership::NotMember);
        for i in 0..SHARED_BUCKETS {
            m.bucket(format!("other {i}").as_bytes());
        }
        let again = m.bucket(b"a");
        assert_eq!(m.membership("u1", &again), Membership::Unknown);
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
