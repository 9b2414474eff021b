//! The users a partition consumer is serving, one slot each: the user's
//! queue of deliveries ([`super::flow::UserQueue`]) and the slot of its
//! live aggregate ([`super::passivation`]), found by the user's id once
//! per delivery or report and then reached by index.
//!
//! A delivery touches its user several times (queued, sent as a batch,
//! its aggregate found or a spare rebound to it, its report answered,
//! the next batch, the user forgotten): with one map per concern that was
//! about a dozen hashes of the id and as many probes, each a likely cache
//! miss with 100,000 users. Here it is one lookup on arrival and one per
//! report. The table holds indexes; the id is held in the slot itself
//! ([`InlineStr`]), so a probe's comparison reads the slot that is used
//! next anyway, and a slot's own hash is kept, so forgetting a user (or
//! moving its aggregate to another user) compares indexes, not strings.
//!
//! A slot lives while it is used: a delivery queued, at the aggregate or
//! backing off, or a live aggregate. [`Users::forget_if_unused`] frees it
//! otherwise; callers call it where a use ends, and an index is only held
//! within one message's handling (a timer names its user by id).

use super::flow::UserQueue;
use crate::hash::InlineStr;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// One user being served.
pub struct User {
    id: InlineStr,
    hash: u64,
    pub queue: UserQueue,
    /// The slot of its live aggregate in [`super::passivation::Aggregates`].
    pub aggregate: Option<usize>,
}

impl User {
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    fn unused(&self) -> bool {
        self.aggregate.is_none() && self.queue.is_idle()
    }
}

/// The users being served, by id and by index.
#[derive(Default)]
pub struct Users {
    /// Indexes into `slots`, hashed by their user's id.
    table: HashTable<usize>,
    slots: Vec<Option<User>>,
    free: Vec<usize>,
    hasher: RandomState,
}

impl Users {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The index of `user_id`'s slot, if it is being served.
    pub fn find(&self, user_id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(user_id);
        let slots = &self.slots;
        self.table
            .find(hash, |&i| is_user(slots, i, user_id))
            .copied()
    }

    /// The index of `user_id`'s slot, a new one (empty queue, no
    /// aggregate) if it was not being served.
    pub fn find_or_add(&mut self, user_id: &str) -> usize {
        let hash = self.hasher.hash_one(user_id);
        let Users {
            table, slots, free, ..
        } = self;
        if let Some(&i) = table.find(hash, |&i| is_user(slots, i, user_id)) {
            return i;
        }
        let user = User {
            id: InlineStr::from(user_id),
            hash,
            queue: UserQueue::default(),
            aggregate: None,
        };
        let i = match free.pop() {
            Some(i) => {
                slots[i] = Some(user);
                i
            }
            None => {
                slots.push(Some(user));
                slots.len() - 1
            }
        };
        let slots = &*slots;
        // Growing rehashes every index by its slot's kept hash.
        table.insert_unique(hash, i, |&j| {
            slots.get(j).and_then(Option::as_ref).map_or(0, |u| u.hash)
        });
        i
    }

    pub fn get(&self, i: usize) -> Option<&User> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut User> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Frees the slot if nothing uses it any more (its queue idle, no
    /// live aggregate); returns whether it was freed. Compares indexes
    /// only: the user's id is not read.
    pub fn forget_if_unused(&mut self, i: usize) -> bool {
        let Some(hash) = self.get(i).filter(|u| u.unused()).map(|u| u.hash) else {
            return false;
        };
        if let Ok(entry) = self.table.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.slots[i] = None;
        self.free.push(i);
        true
    }

    /// Every user being served, with its index.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut User)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, u)| u.as_mut().map(|u| (i, u)))
    }

    pub fn values(&self) -> impl Iterator<Item = &User> {
        self.slots.iter().flatten()
    }

    /// Frees every unused slot (see [`Self::forget_if_unused`]).
    pub fn forget_unused(&mut self) {
        for i in 0..self.slots.len() {
            self.forget_if_unused(i);
        }
    }
}

fn is_user(slots: &[Option<User>], i: usize, user_id: &str) -> bool {
    slots
        .get(i)
        .and_then(Option::as_ref)
        .is_some_and(|u| u.id.as_str() == user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_found_by_id_until_it_is_unused_and_forgotten() {
        // Given two users, one with a delivery queued
        let mut users = Users::default();
        let a = users.find_or_add("a");
        let b = users.find_or_add("b");
        assert_ne!(a, b);
        assert_eq!(users.find_or_add("a"), a, "found, not added again");
        users.get_mut(a).expect("a").queue.enqueue(1);
        // When both are offered to be forgotten
        assert!(!users.forget_if_unused(a), "a delivery is queued");
        assert!(users.forget_if_unused(b));
        // Then the busy one stays, the other is gone and its slot reused
        assert_eq!(users.find("a"), Some(a));
        assert_eq!(users.find("b"), None);
        assert_eq!(users.len(), 1);
        let c = users.find_or_add("c");
        assert_eq!(c, b, "the freed slot");
        assert_eq!(users.get(c).map(User::id), Some("c"));
        assert_eq!(users.find("c"), Some(c));
    }

    #[test]
    fn a_user_with_a_live_aggregate_is_kept() {
        let mut users = Users::default();
        let a = users.find_or_add("a");
        users.get_mut(a).expect("a").aggregate = Some(7);
        assert!(!users.forget_if_unused(a));
        users.get_mut(a).expect("a").aggregate = None;
        assert!(users.forget_if_unused(a));
        assert!(!users.forget_if_unused(a), "once");
    }

    #[test]
    fn many_users_grow_the_table_and_each_is_found() {
        // Ids past the inline length too (held boxed).
        let id = |n: u32| format!("user-{n}-{}", "x".repeat((n % 40) as usize));
        let mut users = Users::default();
        let slots: Vec<usize> = (0..5_000).map(|n| users.find_or_add(&id(n))).collect();
        for (n, &i) in (0..5_000).zip(&slots) {
            assert_eq!(users.find(&id(n)), Some(i));
        }
        for &i in slots.iter().step_by(2) {
            assert!(users.forget_if_unused(i));
        }
        assert_eq!(users.len(), 2_500);
        for (n, &i) in (0..5_000).zip(&slots) {
            let want = (n % 2 == 1).then_some(i);
            assert_eq!(users.find(&id(n)), want, "{}", id(n));
        }
    }
}
