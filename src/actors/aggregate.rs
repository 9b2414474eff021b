//! `UserAggregate`: the event-sourced aggregate of one user.
//!
//! It receives batches of that user's commands from its partition consumer,
//! in delivery order, and is the I/O shell of the pure decision
//! ([`crate::domain::decide::decide`]: rules, duplicates, next sequence
//! numbers): it decides against the user's view and hands the decided
//! batch to the journal writer ([`super::handoff`]), which appends the
//! events as one group and, only after the commit, reports the outcomes to
//! the consumer, which acknowledges the deliveries. A store failure
//! reports every command as retryable, so nothing is acknowledged that is
//! not durable.
//!
//! The view depends on the store's [`JournalGuard`]:
//! - **Conditional** (the embedded store): the first round needs no view at
//!   all. The store numbers the group after the user's last seq under its
//!   writer lock ([`Numbering::Store`]) and refuses it if one of its ids is
//!   taken; only then does the aggregate look the ids up and decide again
//!   (duplicates, ids of other users). So the aggregate holds no state of
//!   its user but the id, and nothing it could hold can be stale.
//! - **Deterministic** (ScyllaDB): a fresh view of every batch (last seq,
//!   the batch's ids, the user's daily keys), numbered by the aggregate.

use super::handoff::{Handoff, Parts};
use super::writer::{Pending, Pushed, Requester, WriteFailed, WriteReply, WriterMsg};
use super::Names;
use crate::domain::decide::{decide, DailyKey, Input, UserView, Verdict};
use crate::domain::{RejectReason, Rejection, TrackInteraction};
use crate::internal_events as ev;
use crate::log::Source;
use crate::store::{
    AppendConflict, AppendGroup, EventMeta, EventStore, GroupOutcome, JournalGuard, Numbering,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use std::sync::Arc;
use std::time::Instant;

/// Rounds of a batch before giving up on it (retryable): the first,
/// which does not look its ids up, and conflicts resolved by reloading.
const MAX_CONFLICT_ROUNDS: usize = 4;

/// One command on its way to an aggregate.
#[derive(Debug, Clone)]
pub struct Work {
    pub delivery_id: u64,
    pub command: Arc<TrackInteraction>,
    pub published_at_ms: i64,
    /// Where the command is in the command log.
    pub source: Source,
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Persisted,
    Duplicate,
    Rejected(RejectReason),
    /// A query command answered on the events topic (Pulsar mode).
    Answered,
    /// Nothing durable happened; try again later. `retryable: false` means
    /// the processing itself failed (counted against `max_deliveries`).
    Retry {
        retryable: bool,
        error: String,
    },
}

/// What became of a batch, for the consumer that sent it.
#[derive(Debug)]
pub struct Processed {
    pub user_id: String,
    pub outcomes: Vec<(u64, Outcome)>,
}

/// Reports of batches to the consumer that sent them: an aggregate sends
/// its batch's alone; the writer, settling a commit, every batch of the
/// commit from that consumer in one message (a message per commit, not per
/// user: with many users a batch is mostly one command).
#[derive(Debug)]
pub struct Reports(pub Vec<Processed>);

pub enum AggregateMsg {
    /// Commands of this user, in delivery order.
    Commands(Vec<Work>),
    /// A batch this aggregate handed to the writer, back because the store
    /// refused its group (a conflict): decide again from a fresh view.
    Redo(Vec<Work>),
    /// A batch this aggregate handed to the writer was not written: the
    /// writer may have stopped, so look it up again before the next send.
    Forget,
    /// Passivation at the cap: serve `user_id` from now on, instead of the
    /// current user, and decide its first batch, `works` (as `Commands`;
    /// an empty one only rebinds). One message, not a rebind followed by
    /// the batch: a new user at the cap is most commands with many users.
    /// Sent only while the aggregate has nothing outstanding.
    Rebind { user_id: String, works: Vec<Work> },
}

pub struct UserAggregate;

pub struct AggregateArgs {
    pub user_id: String,
    pub store: Arc<dyn EventStore>,
    pub names: Names,
    pub consumer: DerivedActorRef<Reports>,
    pub processing: ev::Processing,
}

pub struct AggregateState {
    user_id: String,
    store: Arc<dyn EventStore>,
    names: Names,
    consumer: DerivedActorRef<Reports>,
    processing: ev::Processing,
    /// The journal writer, resolved by name on first use and again after
    /// a send to it failed (the supervisor restarted it under a new ref).
    writer: Option<ActorRef<WriterMsg>>,
}

impl Actor for UserAggregate {
    type Msg = AggregateMsg;
    type State = AggregateState;
    type Arguments = AggregateArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        a: AggregateArgs,
    ) -> Result<AggregateState, ActorProcessingErr> {
        Ok(AggregateState {
            user_id: a.user_id,
            store: a.store,
            names: a.names,
            consumer: a.consumer,
            processing: a.processing,
            writer: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: AggregateMsg,
        state: &mut AggregateState,
    ) -> Result<(), ActorProcessingErr> {
        // The first round of a new batch may hand it to the writer; a batch
        // back after a conflict is decided again and reported from here.
        let (mut works, rounds) = match msg {
            AggregateMsg::Commands(works) => (works, 0..MAX_CONFLICT_ROUNDS),
            AggregateMsg::Redo(works) => (works, 1..MAX_CONFLICT_ROUNDS),
            AggregateMsg::Forget => {
                state.writer = None;
                return Ok(());
            }
            AggregateMsg::Rebind { user_id, works } => {
                state.user_id = user_id;
                if works.is_empty() {
                    return Ok(());
                }
                (works, 0..MAX_CONFLICT_ROUNDS)
            }
        };
        let started = Instant::now();
        // Boxed: an idle aggregate's task then holds a pointer, not the
        // whole state machine of `process` (measured: most of an idle
        // aggregate's memory).
        let outcomes = match Box::pin(process(state, &myself, &mut works, rounds, started)).await {
            Ok(Some(outcomes)) => outcomes,
            Ok(None) => return Ok(()),
            Err(failed) => {
                let outcome = Outcome::Retry {
                    retryable: failed.retryable,
                    error: failed.message,
                };
                works
                    .iter()
                    .map(|w| (w.delivery_id, outcome.clone()))
                    .collect()
            }
        };
        state.processing.record(started.elapsed().as_secs_f64());
        state.consumer.send_message(Reports(vec![Processed {
            user_id: state.user_id.clone(),
            outcomes,
        }]))?;
        Ok(())
    }
}

/// Decides and persists one batch; `Err` means nothing may be acknowledged,
/// `Ok(None)` that the batch was handed to the writer (round 0 with
/// something to write), which reports it: `works` is then empty.
///
/// The decision is [`decide`], a pure function of the view and the
/// commands; this is its I/O shell. A [`JournalGuard::Conditional`] store
/// numbers the group itself and is asked who holds the batch's ids only
/// after it refused one; a [`JournalGuard::Deterministic`] store is asked
/// for a fresh view of every batch (the user may have been another
/// worker's meanwhile) and writes the group as numbered here.
async fn process(
    state: &mut AggregateState,
    myself: &ActorRef<AggregateMsg>,
    works: &mut Vec<Work>,
    rounds: std::ops::Range<usize>,
    started: Instant,
) -> Result<Option<Vec<(u64, Outcome)>>, WriteFailed> {
    let deterministic = state.store.journal_guard() == JournalGuard::Deterministic;
    let numbering = if deterministic {
        Numbering::Expected
    } else {
        Numbering::Store
    };
    let inputs: Vec<Input> = works
        .iter()
        .map(|w| Input {
            command: &w.command,
            published_at: published_at(w.published_at_ms),
        })
        .collect();
    // Only a view that looks ids up needs them (not a conditional store's
    // first round).
    let mut ids: Vec<String> = Vec::new();
    for round in rounds {
        if (deterministic || round > 0) && ids.is_empty() {
            ids = works
                .iter()
                .map(|w| w.command.interaction_id.clone())
                .collect();
        }
        let view = if deterministic {
            let keys = daily_keys(&inputs);
            state
                .store
                .view(&state.user_id, &ids, &keys)
                .await
                .map_err(|e| WriteFailed::from(&e))?
        } else if round == 0 {
            // The store numbers the events and refuses a taken id.
            UserView::default()
        } else {
            id_owners(state, &ids).await?
        };
        let decision = decide(&state.user_id, &view, &inputs);
        let mut outcomes: Vec<(u64, Outcome)> = Vec::with_capacity(works.len());
        for (w, v) in works.iter().zip(&decision.verdicts) {
            let outcome = match v {
                Verdict::Event(_) => Outcome::Persisted,
                Verdict::Duplicate => Outcome::Duplicate,
                Verdict::Rejected(reason) => {
                    ev::command_rejected(*reason);
                    Outcome::Rejected(*reason)
                }
            };
            outcomes.push((w.delivery_id, outcome));
        }
        let duplicates = decision.duplicates() as u64;
        if decision.events.is_empty() && decision.rejections.is_empty() {
            ev::commands_duplicate(duplicates);
            return Ok(Some(outcomes));
        }
        let published: Vec<i64> = decision
            .events
            .iter()
            .map(|e| works[e.command].published_at_ms)
            .collect();
        let group = (!decision.events.is_empty()).then(|| AppendGroup {
            user_id: state.user_id.clone(),
            expected_last_seq: view.last_seq,
            numbering,
            meta: decision
                .events
                .iter()
                .map(|e| EventMeta {
                    source: works[e.command].source,
                    first_of_key: e.first_of_key,
                })
                .collect(),
            events: decision.events.into_iter().map(|e| e.event).collect(),
        });
        let rejection_sources = decision
            .rejections
            .iter()
            .map(|(i, _)| works[*i].source)
            .collect();
        let rejections = decision.rejections.into_iter().map(|(_, r)| r).collect();
        let request = Request {
            group,
            rejections,
            rejection_sources,
            published_at_ms: published,
        };
        if round == 0 {
            drop(inputs);
            let handoff = Handoff::new(Parts {
                user_id: state.user_id.clone(),
                outcomes,
                duplicates,
                works: std::mem::take(works),
                aggregate: myself.clone(),
                consumer: state.consumer.clone(),
                processing: state.processing.clone(),
                started,
            });
            hand_off(state, request, handoff);
            return Ok(None);
        }
        let reply = write(state, request).await?;
        match reply.group {
            None | Some(GroupOutcome::Appended { .. }) => {
                ev::commands_duplicate(duplicates);
                return Ok(Some(outcomes));
            }
            Some(GroupOutcome::Conflict(AppendConflict::SeqMismatch { actual, .. })) => {
                // Only for a group numbered here: the next round's view
                // is fresh.
                tracing::debug!(user_id = %state.user_id, actual, "sequence conflict; reloading");
            }
            Some(GroupOutcome::Conflict(AppendConflict::InteractionIdTaken { .. })) => {
                // The next round finds the id in the store and decides again.
            }
        }
    }
    Err(WriteFailed {
        retryable: true,
        message: "conflicts did not settle; retrying later".into(),
    })
}

/// The view of a conditional store after it refused a taken id: who holds
/// the batch's ids (the last seq is the store's to number with). Asked
/// only then: the store refuses a group holding a taken id in the write
/// itself, so asking first would cost a lookup per batch for the rare
/// duplicate.
async fn id_owners(state: &AggregateState, ids: &[String]) -> Result<UserView, WriteFailed> {
    let mut view = UserView::default();
    let owners = state
        .store
        .interaction_owners(ids)
        .await
        .map_err(|e| WriteFailed::from(&e))?;
    for (id, owner) in ids.iter().zip(owners) {
        match owner {
            Some(o) if o == state.user_id => view.own_ids.insert(id.clone()),
            Some(_) => view.foreign_ids.insert(id.clone()),
            None => false,
        };
    }
    Ok(view)
}

/// The daily keys the batch's commands would count on (a command the
/// rules refuse adds a key the decision does not use: harmless).
fn daily_keys(inputs: &[Input<'_>]) -> Vec<DailyKey> {
    let mut keys: Vec<DailyKey> = inputs
        .iter()
        .filter_map(|i| DailyKey::of_command(i.command))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The message's publish time: the decision's "now".
fn published_at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What a batch asks the writer to commit.
struct Request {
    group: Option<AppendGroup>,
    rejections: Vec<Rejection>,
    rejection_sources: Vec<Source>,
    published_at_ms: Vec<i64>,
}

impl Request {
    fn into_pending(self, reply: Requester) -> Pending {
        Pending::new(
            self.group,
            self.rejections,
            self.rejection_sources,
            self.published_at_ms,
            reply,
        )
    }

    fn into_msg(self, reply: Requester) -> WriterMsg {
        WriterMsg::Write(self.into_pending(reply))
    }
}

/// The journal writer: resolved by name on first use and again after a
/// send to it failed (the supervisor restarted it under a new ref).
fn writer(state: &mut AggregateState) -> Option<ActorRef<WriterMsg>> {
    if state.writer.is_none() {
        state.writer = state.names.writer();
    }
    state.writer.clone()
}

/// Hands a decided batch to the writer, which commits it and reports it:
/// into its intake, waking it if this is the first request since its last
/// commit. If no writer has the intake, the handoff is dropped unsettled
/// and reports the batch retryable itself (see [`super::handoff`]).
fn hand_off(state: &mut AggregateState, r: Request, handoff: Handoff) {
    let pending = r.into_pending(Requester::HandedOff(handoff));
    match state.names.writer_intake().push(pending) {
        // No writer: the request was dropped, its handoff reports.
        None | Some(Pushed::Queued) => {}
        Some(Pushed::Wake) => {
            // A stale ref (the writer restarted) is looked up again once. A
            // writer that is stopping commits the intake (`post_stop`) or
            // drops it (failed), so a wake it never reads loses nothing.
            for _ in 0..2 {
                match writer(state) {
                    Some(w) if w.send_message(WriterMsg::Wake).is_ok() => return,
                    Some(_) => state.writer = None,
                    None => return,
                }
            }
        }
    }
}

/// Sends a group and rejections to the writer and waits for the commit.
async fn write(state: &mut AggregateState, r: Request) -> Result<WriteReply, WriteFailed> {
    let unavailable = || WriteFailed {
        retryable: true,
        message: "journal writer unavailable".into(),
    };
    let writer = writer(state).ok_or_else(unavailable)?;
    // No timer: the writer answers every request it takes, a stopped
    // writer drops the reply port (seen here at once), and each commit is
    // bounded by the store's own request timeouts. A timer here would
    // also count the wait behind earlier commits: under a backlog (at
    // most `max_in_flight` deliveries) that wait can outlast any fixed
    // limit, and every timeout was a retry and a reload more for a store
    // already behind.
    let reply = writer
        .call(|reply| r.into_msg(Requester::Waiting(reply)), None)
        .await;
    match reply {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(ractor::rpc::CallResult::Timeout | ractor::rpc::CallResult::SenderError) | Err(_) => {
            // Stopped or restarted: look it up again next time.
            state.writer = None;
            Err(unavailable())
        }
    }
}
