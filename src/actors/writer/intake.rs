//! The writer's intake: where aggregates leave the batches they hand off.
//!
//! A mailbox message per batch took the writer once through its actor
//! loop per batch, which with many users is once per event. The intake is
//! a queue the writer empties at each commit; a sender wakes the writer
//! ([`super::WriterMsg::Wake`]) only for the first request since the last
//! commit, and once more when the queue holds a full batch: a message per
//! commit instead of one per batch. Group commit is unchanged: whatever
//! arrived while a commit ran goes into the next.
//!
//! The intake lives as long as the service ([`crate::actors::Names`]) and
//! belongs to one writer at a time: a writer opens it in `pre_start` (a new
//! epoch), and when it stops it closes it, committing what is left at a
//! graceful stop (`post_stop`) or dropping it when it failed (its state's
//! drop). A dropped handoff reports its batch retryable, as a mailbox
//! dropped with its writer did. A push into a closed intake drops the
//! request the same way: to the sender, a writer that is not there.

use super::Pending;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Requests handed to the writer between two commits.
#[derive(Default)]
pub struct Intake(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The epoch of the writer that owns it; `open` while that one runs.
    epoch: u64,
    open: bool,
    requests: Vec<Pending>,
    events: usize,
    /// Events at which a batch is full (the writer commits at once).
    max_batch: usize,
    /// A wake was asked for since the last commit (`full`: for a full batch).
    woken: bool,
    woken_full: bool,
}

/// What a sender must do after a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing: the writer was woken since its last commit.
    Queued,
    /// Send the writer a `Wake`.
    Wake,
}

impl Intake {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one holds
        // consistent data all the same.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the intake for a new writer; returns its epoch.
    pub(super) fn open(&self, max_batch: usize) -> u64 {
        let mut i = self.inner();
        i.epoch += 1;
        i.open = true;
        i.max_batch = max_batch.max(1);
        i.woken = false;
        i.woken_full = false;
        i.epoch
    }

    /// Leaves a request for the writer. `None` if no writer has the
    /// intake open: the request is dropped, which settles it (a handoff
    /// reports its batch retryable, a waiting caller sees its port closed).
    pub(crate) fn push(&self, p: Pending) -> Option<Pushed> {
        let mut i = self.inner();
        if !i.open {
            drop(i);
            drop(p);
            return None;
        }
        i.events += p.events();
        i.requests.push(p);
        let wake = if !i.woken {
            i.woken = true;
            true
        } else if i.events >= i.max_batch && !i.woken_full {
            i.woken_full = true;
            true
        } else {
            false
        };
        Some(if wake { Pushed::Wake } else { Pushed::Queued })
    }

    /// Events waiting.
    pub(super) fn events(&self) -> usize {
        self.inner().events
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.inner().requests.is_empty()
    }

    /// Takes the oldest requests that fit in `limit` events, for a commit
    /// (see [`take_fitting`]). Once it is empty the next push wakes the
    /// writer; while requests remain, the writer, which took some, sees
    /// to the rest (`requests_waiting`).
    pub(super) fn take(&self, limit: usize) -> Vec<Pending> {
        let mut i = self.inner();
        let taken = take_fitting(&mut i.requests, limit);
        let events: usize = taken.iter().map(Pending::events).sum();
        i.events = i.events.saturating_sub(events);
        if i.requests.is_empty() {
            i.woken = false;
            i.woken_full = false;
        } else {
            i.woken_full = i.events >= i.max_batch;
        }
        taken
    }

    /// Closes the intake of the writer of `epoch` (no-op if a newer one
    /// opened it) and returns what it held.
    pub(super) fn close(&self, epoch: u64) -> Vec<Pending> {
        let mut i = self.inner();
        if i.epoch != epoch || !i.open {
            return Vec::new();
        }
        i.open = false;
        i.events = 0;
        std::mem::take(&mut i.requests)
    }
}

/// Removes and returns the oldest requests of `requests` that fit in
/// `limit` events together, and at least one if `limit` is not 0: a commit
/// holds at most `--max-write-batch` events (and the store's own limit)
/// unless a single request is larger.
pub(super) fn take_fitting(requests: &mut Vec<Pending>, limit: usize) -> Vec<Pending> {
    if limit == 0 {
        return Vec::new();
    }
    let mut events = 0;
    let mut n = 0;
    for r in requests.iter() {
        let e = r.events();
        if n > 0 && events + e > limit {
            break;
        }
        events += e;
        n += 1;
    }
    if n == requests.len() {
        // The next commit's requests are likely as many: room for them
        // now, rather than growing from nothing push by push (each growth
        // a copy of every request queued so far).
        return std::mem::replace(requests, Vec::with_capacity(n));
    }
    let rest = requests.split_off(n);
    std::mem::replace(requests, rest)
}

#[cfg(test)]
mod tests {
    use super::super::Requester;
    use super::*;

    fn request(rejections: usize) -> Pending {
        let (tx, _rx) = ractor::concurrency::oneshot();
        let r = crate::domain::Rejection {
            command_id: "c".into(),
            reason: crate::domain::RejectReason::Malformed,
            detail: String::new(),
            rejected_at: chrono::Utc::now(),
        };
        Pending::new(
            None,
            vec![r; rejections],
            Vec::new(),
            Vec::new(),
            Requester::Waiting(tx.into()),
        )
    }

    #[test]
    fn a_closed_intake_gives_the_request_back() {
        let intake = Intake::default();
        assert!(intake.push(request(1)).is_none(), "never opened");
        let epoch = intake.open(10);
        assert!(intake.push(request(1)).is_some());
        assert_eq!(intake.close(epoch).len(), 1, "what it held");
        assert!(intake.push(request(1)).is_none(), "closed");
    }

    #[test]
    fn the_first_request_after_a_commit_wakes_the_writer_and_so_does_a_full_batch() {
        let intake = Intake::default();
        intake.open(5);
        assert_eq!(intake.push(request(1)), Some(Pushed::Wake));
        assert_eq!(intake.push(request(1)), Some(Pushed::Queued));
        assert_eq!(intake.push(request(3)), Some(Pushed::Wake), "full");
        assert_eq!(intake.push(request(1)), Some(Pushed::Queued));
        assert_eq!(intake.events(), 6);
        assert_eq!(intake.take(usize::MAX).len(), 4);
        assert_eq!(intake.events(), 0);
        assert_eq!(intake.push(request(1)), Some(Pushed::Wake));
    }

    #[test]
    fn a_commit_takes_at_most_a_batch_and_the_writer_sees_to_the_rest() {
        let intake = Intake::default();
        intake.open(4);
        for n in [2, 1, 2, 3] {
            assert!(intake.push(request(n)).is_some());
        }
        let sizes = |v: Vec<Pending>| v.iter().map(Pending::events).collect::<Vec<_>>();
        assert_eq!(sizes(intake.take(4)), vec![2, 1], "3 of 4 fit, not 5");
        assert_eq!(intake.events(), 5);
        assert_eq!(
            intake.push(request(1)),
            Some(Pushed::Queued),
            "the writer took some: it commits the rest without a wake"
        );
        assert!(intake.take(0).is_empty(), "no room");
        assert_eq!(sizes(intake.take(1)), vec![2], "one at least, if any room");
        assert_eq!(sizes(intake.take(4)), vec![3, 1]);
        assert!(intake.is_empty());
        assert_eq!(intake.push(request(1)), Some(Pushed::Wake));
    }

    #[test]
    fn an_old_writer_closing_late_leaves_the_new_one_open() {
        let intake = Intake::default();
        let old = intake.open(10);
        let new = intake.open(10);
        assert!(intake.push(request(1)).is_some());
        assert!(intake.close(old).is_empty(), "not the old one's to close");
        assert!(intake.push(request(1)).is_some(), "still open");
        assert_eq!(intake.close(new).len(), 2);
    }
}
