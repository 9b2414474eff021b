//! `UserAggregate`: the event-sourced aggregate of one user.
//!
//! It receives batches of that user's commands from its partition consumer,
//! in delivery order, and for each: applies the rules, drops duplicates
//! (same interaction id already stored or earlier in the batch), assigns the
//! next sequence numbers, and asks the journal writer to append them as one
//! group *conditional on the user's last sequence number*. Ids are not
//! looked up before the first write: the store refuses a group holding a
//! stored id, and the rounds after that look them up and decide. Only after the
//! writer confirms the commit does it report the outcomes to the consumer,
//! which acknowledges the deliveries. A conflict (someone appended for this
//! user meanwhile, or an id got taken) reloads the state and decides again;
//! a store failure reports every command as retryable and forgets the
//! cached state, so nothing is acknowledged that is not durable.
//!
//! The state (last sequence number) is loaded lazily on the first batch
//! rather than in `pre_start`, so the consumer never waits on a store read
//! to spawn an aggregate.

use super::consumer::{ConsumerMsg, Outcome, Work};
use super::writer::{WriteFailed, WriterMsg};
use super::Names;
use crate::domain::{validate, RejectReason, Rejection};
use crate::internal_events as ev;
use crate::store::{AppendConflict, AppendGroup, EventStore, GroupOutcome};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// Rounds of a batch before giving up on it (retryable): the first,
/// which does not look its ids up, and conflicts resolved by reloading.
const MAX_CONFLICT_ROUNDS: usize = 4;

pub enum AggregateMsg {
    /// Commands of this user, in delivery order.
    Commands(Vec<Work>),
    /// Passivation at the cap: forget the current user (its state is
    /// dropped, as if the actor had stopped) and serve this one from now
    /// on. Sent only while the aggregate has nothing outstanding.
    Rebind(String),
}

pub struct UserAggregate;

pub struct AggregateArgs {
    pub user_id: String,
    pub store: Arc<dyn EventStore>,
    pub names: Names,
    pub consumer: ActorRef<ConsumerMsg>,
    pub processing: ev::Processing,
}

pub struct AggregateState {
    user_id: String,
    store: Arc<dyn EventStore>,
    names: Names,
    consumer: ActorRef<ConsumerMsg>,
    processing: ev::Processing,
    /// The user's last durable sequence number; `None` until loaded or
    /// after a failure made it uncertain.
    last_seq: Option<u64>,
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
            last_seq: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: AggregateMsg,
        state: &mut AggregateState,
    ) -> Result<(), ActorProcessingErr> {
        let works = match msg {
            AggregateMsg::Commands(works) => works,
            AggregateMsg::Rebind(user_id) => {
                state.user_id = user_id;
                state.last_seq = None;
                return Ok(());
            }
        };
        let started = Instant::now();
        // Boxed: an idle aggregate's task then holds a pointer, not the
        // whole state machine of `process` (measured: most of an idle
        // aggregate's memory).
        let outcomes = match Box::pin(process(state, &works)).await {
            Ok(outcomes) => outcomes,
            Err(failed) => {
                state.last_seq = None;
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
        state.consumer.send_message(ConsumerMsg::Processed {
            user_id: state.user_id.clone(),
            outcomes,
        })?;
        Ok(())
    }
}

/// Decides and persists one batch; `Err` means nothing may be acknowledged.
async fn process(
    state: &mut AggregateState,
    works: &[Work],
) -> Result<Vec<(u64, Outcome)>, WriteFailed> {
    for round in 0..MAX_CONFLICT_ROUNDS {
        let cached = state.last_seq;
        let last_seq = match cached {
            Some(s) => s,
            None => state
                .store
                .last_seq(&state.user_id)
                .await
                .map_err(|e| WriteFailed::from(&e))?,
        };
        state.last_seq = Some(last_seq);
        let now = chrono::Utc::now();
        // Who already holds each id. The first round does not ask: the
        // store refuses a group holding a taken id (`InteractionIdTaken`)
        // in the write itself, so asking first cost a store round trip per
        // batch for the rare duplicate. After such a refusal (or any other
        // conflict) the next rounds ask, and decide with the answer.
        let owners = if round == 0 {
            vec![None; works.len()]
        } else {
            let ids: Vec<String> = works
                .iter()
                .map(|w| w.command.interaction_id.clone())
                .collect();
            state
                .store
                .interaction_owners(&ids)
                .await
                .map_err(|e| WriteFailed::from(&e))?
        };
        // An id of this user already in the store, while our state is from
        // before: another writer appended it (the user moved between
        // workers), or a write that crashed before its acknowledgement did.
        // Reload first: the load is where the ScyllaDB store mends a write
        // cut short between the journal and the projections, and acking the
        // duplicate without it left that event out of the statistics for
        // good (CI's crash fault scenario).
        if cached.is_some() && owners.iter().flatten().any(|o| *o == state.user_id) {
            state.last_seq = None;
            continue;
        }
        let mut outcomes = Vec::with_capacity(works.len());
        let mut events = Vec::new();
        let mut rejections = Vec::new();
        let mut published = Vec::new();
        let mut seen = HashSet::new();
        for (w, owner) in works.iter().zip(owners) {
            match validate(&w.command, now) {
                Err(v) => {
                    ev::command_rejected(v.reason);
                    rejections.push(Rejection {
                        command_id: w.command.interaction_id.clone(),
                        reason: v.reason,
                        detail: v.message,
                        rejected_at: now,
                    });
                    outcomes.push((w.delivery_id, Outcome::Rejected(v.reason)));
                }
                Ok(mut event) => {
                    let id = event.interaction_id.clone();
                    if !seen.insert(id.clone()) {
                        outcomes.push((w.delivery_id, Outcome::Duplicate));
                        continue;
                    }
                    match owner {
                        Some(owner) if owner == state.user_id => {
                            outcomes.push((w.delivery_id, Outcome::Duplicate));
                        }
                        Some(_) => {
                            let reason = RejectReason::ConflictingInteractionId;
                            let detail = "interaction id already used by another user".to_string();
                            ev::command_rejected(reason);
                            rejections.push(Rejection {
                                command_id: format!("{id}#{}", state.user_id),
                                reason,
                                detail,
                                rejected_at: now,
                            });
                            outcomes.push((w.delivery_id, Outcome::Rejected(reason)));
                        }
                        None => {
                            event.seq = last_seq + events.len() as u64 + 1;
                            events.push(event);
                            published.push(w.published_at_ms);
                            outcomes.push((w.delivery_id, Outcome::Persisted));
                        }
                    }
                }
            }
        }
        let appended = events.len() as u64;
        let duplicates = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Duplicate))
            .count();
        if events.is_empty() && rejections.is_empty() {
            ev::commands_duplicate(duplicates as u64);
            return Ok(outcomes);
        }
        let group = (!events.is_empty()).then(|| AppendGroup {
            user_id: state.user_id.clone(),
            expected_last_seq: last_seq,
            events,
        });
        let writer: ActorRef<WriterMsg> = state.names.writer().ok_or_else(|| WriteFailed {
            retryable: true,
            message: "journal writer unavailable".into(),
        })?;
        // No timer: the writer answers every request it takes, a stopped
        // writer drops the reply port (seen here at once), and each commit
        // is bounded by the store's own request timeouts. A timer here
        // would also count the wait behind earlier commits: under a backlog
        // (at most `max_in_flight` deliveries) that wait can outlast any
        // fixed limit, and every timeout was a retry and a reload more for
        // a store already behind (tenth session, real stack: 4,500 to
        // 35,000 retries in a 30 s run that fell behind; none since).
        let reply = writer
            .call(
                |reply| WriterMsg::Write {
                    group,
                    rejections,
                    published_at_ms: published,
                    reply,
                },
                None,
            )
            .await;
        let reply = match reply {
            Ok(ractor::rpc::CallResult::Success(r)) => r?,
            Ok(ractor::rpc::CallResult::Timeout | ractor::rpc::CallResult::SenderError)
            | Err(_) => {
                return Err(WriteFailed {
                    retryable: true,
                    message: "journal writer unavailable".into(),
                })
            }
        };
        match reply.group {
            None | Some(GroupOutcome::Appended { .. }) => {
                state.last_seq = Some(last_seq + appended);
                ev::commands_duplicate(duplicates as u64);
                return Ok(outcomes);
            }
            Some(GroupOutcome::Conflict(AppendConflict::SeqMismatch { actual, .. })) => {
                tracing::debug!(user_id = %state.user_id, actual, "sequence conflict; reloading");
                state.last_seq = None;
            }
            Some(GroupOutcome::Conflict(AppendConflict::InteractionIdTaken { .. })) => {
                // The next round finds the id in the store and decides again.
                state.last_seq = None;
            }
        }
    }
    Err(WriteFailed {
        retryable: true,
        message: "conflicts did not settle; retrying later".into(),
    })
}
