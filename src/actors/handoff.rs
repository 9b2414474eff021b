//! `Handoff`: a user's batch that its aggregate handed to the journal
//! writer with the outcomes already decided, for the writer to settle.
//!
//! Deciding needs the aggregate; reporting does not: once the decision is
//! made, whether the batch's deliveries may be acknowledged depends only on
//! the commit. So the aggregate hands the batch over and is free at once,
//! and the writer, after the commit, reports to the consumer itself: two
//! messages per batch (consumer -> aggregate -> writer -> consumer) instead
//! of a request, a reply and a report.
//!
//! The consumer sends a user's next batch only after the report of the
//! previous one, and every settlement that gives the aggregate work
//! reaches its mailbox *before* that report leaves:
//! - appended (or nothing to append): the report to the consumer;
//! - conflict (the store refused the group): the batch goes back to the
//!   aggregate ([`AggregateMsg::Redo`]), which looks its ids up, decides
//!   again and reports itself; the consumer hears nothing until then;
//! - failure, or a writer that stopped before answering (the handoff is
//!   dropped unsettled): [`AggregateMsg::Forget`] to the aggregate, then
//!   every delivery reported retryable to the consumer.

use super::aggregate::{AggregateMsg, Outcome, Processed, Reports, Work};
use super::writer::{WriteFailed, WriteReply};
use crate::internal_events as ev;
use crate::store::GroupOutcome;
use ractor::{ActorRef, DerivedActorRef};
use std::time::Instant;

/// A decided batch on its way through the writer. Dropped unsettled (the
/// writer stopped, or never got it), it reports the batch retryable.
pub struct Handoff(Option<Parts>);

/// What a settlement needs.
pub struct Parts {
    pub user_id: String,
    /// The decided outcome of every delivery, reported as is once the
    /// group is appended.
    pub outcomes: Vec<(u64, Outcome)>,
    /// Duplicates among them (counted once the batch settles).
    pub duplicates: u64,
    /// The batch itself, for the aggregate to decide again after a conflict.
    pub works: Vec<Work>,
    pub aggregate: ActorRef<AggregateMsg>,
    pub consumer: DerivedActorRef<Reports>,
    pub processing: ev::Processing,
    /// When the aggregate took the batch.
    pub started: Instant,
}

impl Handoff {
    pub fn new(parts: Parts) -> Self {
        Self(Some(parts))
    }

    /// Settles the batch with the writer's answer to its request. The
    /// report of an appended batch joins `reports`, sent once the commit's
    /// batches are settled; every other settlement reports at once (after
    /// its message to the aggregate).
    pub fn settle(mut self, answer: Result<WriteReply, WriteFailed>, reports: &mut ReportBatch) {
        let Some(p) = self.0.take() else { return };
        match answer {
            Ok(WriteReply {
                group: None | Some(GroupOutcome::Appended { .. }),
            }) => {
                ev::commands_duplicate(p.duplicates);
                p.processing.record(p.started.elapsed().as_secs_f64());
                reports.add(
                    p.consumer,
                    Processed {
                        user_id: p.user_id,
                        outcomes: p.outcomes,
                    },
                );
            }
            Ok(WriteReply {
                group: Some(GroupOutcome::Conflict(conflict)),
            }) => {
                tracing::debug!(user_id = %p.user_id, ?conflict, "append refused; deciding again");
                let ids: Vec<u64> = p.works.iter().map(|w| w.delivery_id).collect();
                if p.aggregate
                    .send_message(AggregateMsg::Redo(p.works))
                    .is_err()
                {
                    // The aggregate stopped with its batch in flight: the
                    // consumer retries it (a stopped consumer: redelivered).
                    let failed = WriteFailed {
                        retryable: true,
                        message: "aggregate stopped during a conflict".into(),
                    };
                    report_failed(p.user_id, ids.into_iter(), &p.consumer, failed);
                }
            }
            Err(failed) => fail(p, failed),
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            fail(
                p,
                WriteFailed {
                    retryable: true,
                    message: "journal writer unavailable".into(),
                },
            );
        }
    }
}

/// Nothing durable: the aggregate forgets its state (its cached seq
/// counted the group), then the consumer hears every delivery retryable.
fn fail(p: Parts, failed: WriteFailed) {
    p.processing.record(p.started.elapsed().as_secs_f64());
    let _ = p.aggregate.send_message(AggregateMsg::Forget);
    let ids = p.works.iter().map(|w| w.delivery_id);
    report_failed(p.user_id, ids, &p.consumer, failed);
}

fn report_failed(
    user_id: String,
    ids: impl Iterator<Item = u64>,
    consumer: &DerivedActorRef<Reports>,
    failed: WriteFailed,
) {
    let outcome = Outcome::Retry {
        retryable: failed.retryable,
        error: failed.message,
    };
    let outcomes = ids.map(|id| (id, outcome.clone())).collect();
    let _ = consumer.send_message(Reports(vec![Processed { user_id, outcomes }]));
}

/// The reports of appended batches, gathered per consumer while a commit's
/// requests are answered, then sent: one message per consumer and commit.
#[derive(Default)]
pub struct ReportBatch(Vec<(DerivedActorRef<Reports>, Vec<Processed>)>);

impl ReportBatch {
    fn add(&mut self, consumer: DerivedActorRef<Reports>, report: Processed) {
        // A commit's batches come from a consumer per partition: a few.
        match self
            .0
            .iter_mut()
            .find(|(c, _)| c.get_id() == consumer.get_id())
        {
            Some((_, reports)) => reports.push(report),
            None => self.0.push((consumer, vec![report])),
        }
    }

    /// Sends what was gathered. A consumer that stopped gets its
    /// deliveries again.
    pub fn send(self) {
        for (consumer, reports) in self.0 {
            let _ = consumer.send_message(Reports(reports));
        }
    }
}
