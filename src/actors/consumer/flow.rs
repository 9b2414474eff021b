//! The in-flight bookkeeping of a partition consumer, per user.
//!
//! Per-user order is kept by construction: a user has at most one batch at
//! its aggregate at a time. Deliveries that arrive meanwhile wait in the
//! user's queue and go together as the next batch (hot users batch
//! themselves). A batch that must be retried goes back to the *front* of
//! the queue, and the queue waits for the back-off, so nothing newer can
//! overtake it. After an aggregate failure the user is "suspect": its
//! deliveries go one at a time, so a poison command fails alone and is
//! dead-lettered alone while the others of the same user succeed; it is
//! trusted again once its queue has drained.

use crate::domain::{RejectReason, TrackInteraction};
use crate::hash::{InlineStr, Map};
use crate::log::Delivery;
use std::collections::VecDeque;
use std::sync::Arc;

/// One delivery taken from the log and not yet acknowledged.
pub struct InFlight {
    pub delivery: Delivery,
    /// The decoded command (`None` for deliveries that never reach an
    /// aggregate: undecodable ones, saga steps, dead letters). Shared with
    /// the `Work` sent to the aggregate: each send (and resend after a
    /// retry) is a reference count, not a copy of its strings.
    pub command: Option<Arc<TrackInteraction>>,
    /// Retries after transient failures (for the back-off).
    pub attempts: u32,
    /// Failures of its aggregate while processing it (counted against
    /// `max_deliveries`).
    pub failures: u32,
    /// Set when it is refused without reaching an aggregate (the reason
    /// recorded as its rejection).
    pub refused: Option<RejectReason>,
}

#[derive(Default)]
struct UserQueue {
    /// The batch at the aggregate, if any.
    at_aggregate: Option<Vec<u64>>,
    /// Deliveries waiting their turn, oldest first.
    queued: VecDeque<u64>,
    /// A retry back-off is running: do not send until it ends.
    backing_off: bool,
    /// An aggregate failed on this user's commands: send one at a time.
    suspect: bool,
}

impl UserQueue {
    fn is_idle(&self) -> bool {
        self.at_aggregate.is_none() && self.queued.is_empty() && !self.backing_off
    }
}

/// Deliveries in flight and the per-user queues.
///
/// With many users nearly every delivery is its user's only one in
/// flight: its queue is made when it arrives and dropped once answered.
/// So a queue's key is held in place ([`InlineStr`], ids of up to 22
/// bytes) and a batch's ids move from the queue to the aggregate's
/// record without a copy.
#[derive(Default)]
pub struct Flow {
    in_flight: Map<u64, InFlight>,
    users: Map<InlineStr, UserQueue>,
    /// Deliveries sent to the writer as rejections, not yet settled.
    settling: usize,
}

impl Flow {
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn insert(&mut self, f: InFlight) {
        self.in_flight.insert(f.delivery.id, f);
    }

    pub fn get(&self, id: u64) -> Option<&InFlight> {
        self.in_flight.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut InFlight> {
        self.in_flight.get_mut(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<InFlight> {
        self.in_flight.remove(&id)
    }

    pub fn settling(&mut self, delta: isize) {
        self.settling = self.settling.saturating_add_signed(delta);
    }

    /// Queues a delivery for its user.
    pub fn enqueue(&mut self, user: &str, id: u64) {
        match self.users.get_mut(user) {
            Some(q) => q.queued.push_back(id),
            None => {
                let mut q = UserQueue::default();
                q.queued.push_back(id);
                self.users.insert(user.into(), q);
            }
        }
    }

    /// The next batch to send for `user`, if it may be sent now: it is
    /// recorded as at the aggregate, and each of its deliveries is handed
    /// to `work` (with its entry, if still in flight), which gives what to
    /// send for it, if anything.
    pub fn next_batch<T>(
        &mut self,
        user: &str,
        mut work: impl FnMut(u64, Option<&InFlight>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let q = self.users.get_mut(user)?;
        if q.at_aggregate.is_some() || q.backing_off || q.queued.is_empty() {
            return None;
        }
        let batch: Vec<u64> = if q.suspect {
            q.queued.pop_front().into_iter().collect()
        } else {
            // The queue's buffer becomes the batch (no copy, no allocation).
            Vec::from(std::mem::take(&mut q.queued))
        };
        let works = batch
            .iter()
            .filter_map(|&id| work(id, self.in_flight.get(&id)))
            .collect();
        q.at_aggregate = Some(batch);
        Some(works)
    }

    /// The aggregate answered the user's batch.
    pub fn answered(&mut self, user: &str, all_ok: bool) {
        if let Some(q) = self.users.get_mut(user) {
            q.at_aggregate = None;
            // Suspect until every delivery that was queued behind the
            // failure went through alone.
            if all_ok && q.queued.is_empty() {
                q.suspect = false;
            }
        }
    }

    /// The user's aggregate failed: returns the batch it was processing.
    pub fn aggregate_failed(&mut self, user: &str) -> Vec<u64> {
        match self.users.get_mut(user) {
            Some(q) => {
                q.suspect = true;
                q.at_aggregate.take().unwrap_or_default()
            }
            None => Vec::new(),
        }
    }

    /// Puts deliveries back at the front of the user's queue and holds the
    /// queue until [`Flow::resume`]. Returns whether a back-off must be
    /// scheduled (it was not already running).
    pub fn back_off(&mut self, user: &str, ids: &[u64]) -> bool {
        let q = self.users.entry(user.into()).or_default();
        for id in ids.iter().rev() {
            q.queued.push_front(*id);
        }
        !std::mem::replace(&mut q.backing_off, true)
    }

    /// Ends the back-off of a user.
    pub fn resume(&mut self, user: &str) {
        if let Some(q) = self.users.get_mut(user) {
            q.backing_off = false;
        }
    }

    /// Forgets users with nothing in flight (keeps the map small).
    pub fn forget_idle(&mut self, user: &str) {
        if self.users.get(user).is_some_and(UserQueue::is_idle) {
            self.users.remove(user);
        }
    }

    /// Draining: drops every delivery that is not at an aggregate or at the
    /// writer (left unacknowledged: delivered again after the restart).
    /// Returns how many were dropped.
    pub fn drop_waiting(&mut self) -> usize {
        let mut dropped = 0;
        for q in self.users.values_mut() {
            for id in q.queued.drain(..) {
                if self.in_flight.remove(&id).is_some() {
                    dropped += 1;
                }
            }
            q.backing_off = false;
        }
        self.users.retain(|_, q| !q.is_idle());
        dropped
    }

    /// Nothing is at an aggregate or at the writer.
    pub fn quiescent(&self) -> bool {
        self.settling == 0 && self.users.values().all(|q| q.at_aggregate.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_per_user_and_newer_ones_wait() {
        let mut f = Flow::default();
        f.enqueue("u", 1);
        f.enqueue("u", 2);
        assert_eq!(ids(&mut f, "u"), Some(vec![1, 2]));
        f.enqueue("u", 3);
        assert_eq!(ids(&mut f, "u"), None, "one batch at a time");
        f.answered("u", true);
        assert_eq!(ids(&mut f, "u"), Some(vec![3]));
    }

    #[test]
    fn retried_batch_goes_first_after_the_back_off() {
        let mut f = Flow::default();
        f.enqueue("u", 1);
        assert_eq!(ids(&mut f, "u"), Some(vec![1]));
        f.enqueue("u", 2);
        f.answered("u", false);
        assert!(f.back_off("u", &[1]));
        assert!(!f.back_off("u", &[]), "already backing off");
        assert_eq!(ids(&mut f, "u"), None, "held during the back-off");
        f.resume("u");
        assert_eq!(ids(&mut f, "u"), Some(vec![1, 2]));
    }

    #[test]
    fn a_suspect_user_goes_one_at_a_time_until_a_success() {
        let mut f = Flow::default();
        for id in 1..=3 {
            f.enqueue("u", id);
        }
        assert_eq!(ids(&mut f, "u"), Some(vec![1, 2, 3]));
        let failed = f.aggregate_failed("u");
        assert_eq!(failed, vec![1, 2, 3]);
        f.back_off("u", &failed);
        f.resume("u");
        assert_eq!(ids(&mut f, "u"), Some(vec![1]));
        f.answered("u", true);
        assert_eq!(ids(&mut f, "u"), Some(vec![2]), "still one at a time");
        f.answered("u", true);
        assert_eq!(ids(&mut f, "u"), Some(vec![3]));
        f.answered("u", true);
        f.enqueue("u", 4);
        f.enqueue("u", 5);
        assert_eq!(
            ids(&mut f, "u"),
            Some(vec![4, 5]),
            "trusted again once drained"
        );
    }

    #[test]
    fn draining_drops_what_waits_and_keeps_what_is_at_the_aggregate() {
        let mut f = Flow::default();
        for id in 1..=3 {
            f.insert(InFlight {
                delivery: delivery(id),
                command: None,
                attempts: 0,
                failures: 0,
                refused: None,
            });
        }
        f.enqueue("u", 1);
        assert_eq!(ids(&mut f, "u"), Some(vec![1]));
        f.enqueue("u", 2);
        f.enqueue("v", 3);
        assert_eq!(f.drop_waiting(), 2);
        assert!(!f.quiescent());
        f.answered("u", true);
        assert!(f.quiescent());
        assert_eq!(f.len(), 1);
    }

    fn ids(f: &mut Flow, user: &str) -> Option<Vec<u64>> {
        f.next_batch(user, |id, _| Some(id))
    }

    fn delivery(id: u64) -> Delivery {
        Delivery {
            partition: 0,
            id,
            key: None,
            payload: Vec::new(),
            properties: Default::default(),
            published_at_ms: 0,
            redelivery_count: 0,
            identity: format!("t:{id}"),
            position: crate::log::Position::new(0, id, 0),
        }
    }
}
