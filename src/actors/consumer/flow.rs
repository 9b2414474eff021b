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

use super::users::Users;
use crate::domain::{RejectReason, TrackInteraction};
use crate::hash::Map;
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

/// One user's deliveries in flight (see the module docs); held in its
/// slot of [`Users`].
#[derive(Default)]
pub struct UserQueue {
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
    /// Nothing queued, at the aggregate or backing off.
    pub fn is_idle(&self) -> bool {
        self.at_aggregate.is_none() && self.queued.is_empty() && !self.backing_off
    }

    /// Queues a delivery.
    pub fn enqueue(&mut self, id: u64) {
        self.queued.push_back(id);
    }

    /// The next batch to send, if it may be sent now; it is recorded as at
    /// the aggregate.
    pub fn next_batch(&mut self) -> Option<Vec<u64>> {
        if self.at_aggregate.is_some() || self.backing_off || self.queued.is_empty() {
            return None;
        }
        let batch: Vec<u64> = if self.suspect {
            self.queued.pop_front().into_iter().collect()
        } else {
            self.queued.drain(..).collect()
        };
        self.at_aggregate = Some(batch.clone());
        Some(batch)
    }

    /// The aggregate answered the batch.
    pub fn answered(&mut self, all_ok: bool) {
        self.at_aggregate = None;
        // Suspect until every delivery that was queued behind the failure
        // went through alone.
        if all_ok && self.queued.is_empty() {
            self.suspect = false;
        }
    }

    /// The aggregate failed: returns the batch it was processing.
    pub fn aggregate_failed(&mut self) -> Vec<u64> {
        self.suspect = true;
        self.at_aggregate.take().unwrap_or_default()
    }

    /// Puts deliveries back at the front of the queue and holds it until
    /// [`UserQueue::resume`]. Returns whether a back-off must be scheduled
    /// (it was not already running).
    pub fn back_off(&mut self, ids: &[u64]) -> bool {
        for id in ids.iter().rev() {
            self.queued.push_front(*id);
        }
        !std::mem::replace(&mut self.backing_off, true)
    }

    /// Ends the back-off.
    pub fn resume(&mut self) {
        self.backing_off = false;
    }
}

/// Deliveries in flight, by delivery id (their users' queues are in
/// [`Users`]).
#[derive(Default)]
pub struct Flow {
    in_flight: Map<u64, InFlight>,
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

    /// Draining: drops every delivery that is not at an aggregate or at the
    /// writer (left unacknowledged: delivered again after the restart), and
    /// forgets the users left unused. Returns how many were dropped.
    pub fn drop_waiting(&mut self, users: &mut Users) -> usize {
        let mut dropped = 0;
        for (_, u) in users.iter_mut() {
            for id in u.queue.queued.drain(..) {
                if self.in_flight.remove(&id).is_some() {
                    dropped += 1;
                }
            }
            u.queue.backing_off = false;
        }
        users.forget_unused();
        dropped
    }

    /// Nothing is at an aggregate or at the writer.
    pub fn quiescent(&self, users: &Users) -> bool {
        self.settling == 0 && users.values().all(|u| u.queue.at_aggregate.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_per_user_and_newer_ones_wait() {
        let mut q = UserQueue::default();
        q.enqueue(1);
        q.enqueue(2);
        assert_eq!(q.next_batch(), Some(vec![1, 2]));
        q.enqueue(3);
        assert_eq!(q.next_batch(), None, "one batch at a time");
        q.answered(true);
        assert_eq!(q.next_batch(), Some(vec![3]));
    }

    #[test]
    fn retried_batch_goes_first_after_the_back_off() {
        let mut q = UserQueue::default();
        q.enqueue(1);
        assert_eq!(q.next_batch(), Some(vec![1]));
        q.enqueue(2);
        q.answered(false);
        assert!(q.back_off(&[1]));
        assert!(!q.back_off(&[]), "already backing off");
        assert_eq!(q.next_batch(), None, "held during the back-off");
        assert!(!q.is_idle(), "a back-off keeps the user");
        q.resume();
        assert_eq!(q.next_batch(), Some(vec![1, 2]));
    }

    #[test]
    fn a_suspect_user_goes_one_at_a_time_until_a_success() {
        let mut q = UserQueue::default();
        for id in 1..=3 {
            q.enqueue(id);
        }
        assert_eq!(q.next_batch(), Some(vec![1, 2, 3]));
        let failed = q.aggregate_failed();
        assert_eq!(failed, vec![1, 2, 3]);
        q.back_off(&failed);
        q.resume();
        assert_eq!(q.next_batch(), Some(vec![1]));
        q.answered(true);
        assert_eq!(q.next_batch(), Some(vec![2]), "still one at a time");
        q.answered(true);
        assert_eq!(q.next_batch(), Some(vec![3]));
        q.answered(true);
        q.enqueue(4);
        q.enqueue(5);
        assert_eq!(
            q.next_batch(),
            Some(vec![4, 5]),
            "trusted again once drained"
        );
    }

    #[test]
    fn draining_drops_what_waits_and_keeps_what_is_at_the_aggregate() {
        let mut f = Flow::default();
        let mut users = Users::default();
        for id in 1..=3 {
            f.insert(InFlight {
                delivery: delivery(id),
                command: None,
                attempts: 0,
                failures: 0,
                refused: None,
            });
        }
        let (u, v) = (users.find_or_add("u"), users.find_or_add("v"));
        queue(&mut users, u).enqueue(1);
        assert_eq!(queue(&mut users, u).next_batch(), Some(vec![1]));
        queue(&mut users, u).enqueue(2);
        queue(&mut users, v).enqueue(3);
        assert_eq!(f.drop_waiting(&mut users), 2);
        assert_eq!(users.find("v"), None, "nothing left of v: forgotten");
        assert!(!f.quiescent(&users));
        queue(&mut users, u).answered(true);
        assert!(f.quiescent(&users));
        assert_eq!(f.len(), 1);
    }

    fn queue(users: &mut Users, i: usize) -> &mut UserQueue {
        &mut users.get_mut(i).expect("user").queue
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
