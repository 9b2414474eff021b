//! `PartitionConsumer`: consumes one partition of the command log and
//! supervises the aggregates of the users whose commands it routes.
//!
//! - A reader task pulls batches from the partition, holding one permit of a
//!   semaphore per delivery: at most `max_in_flight` deliveries are
//!   unacknowledged, so a slow store slows consumption instead of growing
//!   memory.
//! - Each delivery is decoded; undecodable ones are recorded as rejections
//!   through the writer and acknowledged once that is durable. Commands are
//!   grouped by user and sent to the user's aggregate (spawned on demand).
//! - The aggregate reports outcomes; persisted, duplicate and rejected
//!   deliveries are acknowledged, retryable failures are dispatched again
//!   after a back-off. A panicking aggregate is replaced; its deliveries
//!   are dispatched again, and dead-lettered after `max_deliveries`.
//! - Aggregates are passivated when idle for `aggregate_idle` or when the
//!   partition's share of `max_live_aggregates` is reached (least recently
//!   used first), but only when they have nothing outstanding: passivation
//!   and routing happen in this one actor, so no message can reach an
//!   aggregate that is stopping.

mod order;
mod passivation;
mod saga;

use super::aggregate::{AggregateArgs, AggregateMsg, UserAggregate};
use super::writer::{WriteFailed, WriteReply, WriterMsg};
use super::{Health, Names, PipelineConfig};
use crate::domain::codec::{decode_command, derived_id, Command, MessageMeta};
use crate::domain::{RejectReason, Rejection, TrackInteraction};
use crate::internal_events as ev;
use crate::log::{Acker, CommandLog, Delivery, EventSink, LogError, PartitionSource};
use crate::store::EventStore;
use chrono::{TimeZone, Utc};
use passivation::Aggregates;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Deliveries the reader takes from the log at once (at most).
const READ_BATCH: usize = 1024;

/// One command on its way to an aggregate.
#[derive(Debug, Clone)]
pub struct Work {
    pub delivery_id: u64,
    pub command: TrackInteraction,
    pub published_at_ms: i64,
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Persisted,
    Duplicate,
    Rejected(RejectReason),
    /// A query command answered on the events topic (Pulsar mode).
    Answered,
    /// Nothing durable happened; dispatch again later.
    Retry {
        retryable: bool,
        error: String,
    },
}

pub enum ConsumerMsg {
    /// Deliveries read from the partition (from the reader task).
    Deliveries(Vec<Delivery>),
    /// Outcomes reported by a user's aggregate.
    Processed {
        user_id: String,
        outcomes: Vec<(u64, Outcome)>,
    },
    /// Rejections recorded (or not) by the writer for undecodable deliveries.
    /// (Rejections recorded for deliveries that never reached an aggregate:
    /// undecodable or dead-lettered ones.)
    Settled {
        items: Vec<(u64, RejectReason)>,
        result: Result<(), WriteFailed>,
    },
    /// A `BuildInteractionsInfo` answer was published (or not).
    Answered { id: u64, result: Result<(), String> },
    /// Dispatch these deliveries again (after a back-off).
    Redeliver(Vec<u64>),
    /// Periodic: commit acks, passivate idle aggregates.
    Tick,
    /// The reader task stopped (log closed or failed).
    ReaderStopped(String),
    /// Stop reading, finish what is in flight, commit, then answer.
    Drain(RpcReplyPort<()>),
}

struct InFlight {
    delivery: Delivery,
    /// Set once decoded into a command for a user.
    work: Option<Work>,
    attempts: u32,
    /// Dispatched (to an aggregate or the writer) and not yet answered.
    dispatched: bool,
    /// Held back behind an older delivery of its user that waits for a
    /// retry (see `order`).
    held: bool,
}

pub struct PartitionConsumer;

pub struct ConsumerArgs {
    pub partition: u32,
    pub log: Arc<dyn CommandLog>,
    pub store: Arc<dyn EventStore>,
    pub names: Names,
    pub health: Arc<Health>,
    pub config: PipelineConfig,
    /// This partition's share of the live-aggregate cap.
    pub aggregate_cap: usize,
    /// The events topic (Pulsar mode): answers `BuildInteractionsInfo`.
    pub sink: Option<Arc<dyn EventSink>>,
}

pub struct ConsumerState {
    partition: u32,
    store: Arc<dyn EventStore>,
    names: Names,
    health: Arc<Health>,
    config: PipelineConfig,
    acker: Arc<dyn Acker>,
    permits: Arc<Semaphore>,
    reader: Option<JoinHandle<()>>,
    in_flight: HashMap<u64, InFlight>,
    aggregates: Aggregates,
    draining: Option<RpcReplyPort<()>>,
    acks_pending: bool,
    sink: Option<Arc<dyn EventSink>>,
}

impl Actor for PartitionConsumer {
    type Msg = ConsumerMsg;
    type State = ConsumerState;
    type Arguments = ConsumerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        a: ConsumerArgs,
    ) -> Result<ConsumerState, ActorProcessingErr> {
        let (source, acker) = a.log.open(a.partition).await?;
        let permits = Arc::new(Semaphore::new(a.config.max_in_flight.max(1)));
        let reader = tokio::spawn(read_loop(source, permits.clone(), myself.clone()));
        myself.send_interval(a.config.commit_interval, || ConsumerMsg::Tick);
        a.health.consumer_up();
        Ok(ConsumerState {
            partition: a.partition,
            store: a.store,
            names: a.names,
            aggregates: Aggregates::new(a.health.clone(), a.aggregate_cap, a.config.aggregate_idle),
            health: a.health,
            config: a.config,
            acker,
            permits,
            reader: Some(reader),
            in_flight: HashMap::new(),
            draining: None,
            acks_pending: false,
            sink: a.sink,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        stop_reader(state);
        state.aggregates.stop_all();
        state.health.consumer_down();
        ev::in_flight(state.partition, 0);
        state.acker.commit().await?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: ConsumerMsg,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConsumerMsg::Deliveries(batch) => on_deliveries(&myself, state, batch).await?,
            ConsumerMsg::Processed { user_id, outcomes } => {
                state.aggregates.completed(&user_id, outcomes.len());
                on_outcomes(&myself, state, outcomes).await?;
            }
            ConsumerMsg::Settled { items, result } => {
                let outcomes = items
                    .into_iter()
                    .map(|(id, reason)| match &result {
                        Ok(()) => (id, Outcome::Rejected(reason)),
                        Err(f) => (
                            id,
                            Outcome::Retry {
                                retryable: f.retryable,
                                error: f.message.clone(),
                            },
                        ),
                    })
                    .collect();
                on_outcomes(&myself, state, outcomes).await?;
            }
            ConsumerMsg::Answered { id, result } => {
                let outcome = match result {
                    Ok(()) => Outcome::Answered,
                    Err(error) => Outcome::Retry {
                        retryable: true,
                        error,
                    },
                };
                on_outcomes(&myself, state, vec![(id, outcome)]).await?;
            }
            ConsumerMsg::Redeliver(ids) => {
                if state.draining.is_none() {
                    ev::redelivered(state.partition, ids.len() as u64);
                    let ids = order::with_held(&mut state.in_flight, ids);
                    dispatch(&myself, state, ids).await?;
                }
            }
            ConsumerMsg::Tick => {
                let released = order::releasable(&mut state.in_flight);
                if !released.is_empty() && state.draining.is_none() {
                    dispatch(&myself, state, released).await?;
                }
                commit_acks(state).await?;
                let n = state.aggregates.passivate_idle();
                ev::passivated("idle", n);
            }
            ConsumerMsg::ReaderStopped(reason) => {
                if state.draining.is_none() {
                    return Err(
                        format!("partition {} reader stopped: {reason}", state.partition).into(),
                    );
                }
            }
            ConsumerMsg::Drain(reply) => {
                stop_reader(state);
                // Deliveries waiting for a retry are left unacknowledged:
                // they are delivered again after the restart.
                state.in_flight.retain(|_, f| f.dispatched);
                state.draining = Some(reply);
                finish_drain_if_done(state).await?;
            }
        }
        ev::in_flight(state.partition, state.in_flight.len());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(user_id) = state.aggregates.remove_by_id(cell.get_id()) else {
                    return Ok(());
                };
                ev::aggregate_failed(state.partition, &error.to_string());
                // Its outstanding deliveries are dispatched again, or
                // dead-lettered once they used up their deliveries.
                let ids: Vec<u64> = state
                    .in_flight
                    .iter()
                    .filter(|(_, f)| {
                        f.dispatched
                            && f.work
                                .as_ref()
                                .is_some_and(|w| w.command.user_id == user_id)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                let outcome = Outcome::Retry {
                    retryable: false,
                    error: format!("aggregate failed: {error}"),
                };
                on_outcomes(
                    &myself,
                    state,
                    ids.into_iter().map(|id| (id, outcome.clone())).collect(),
                )
                .await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.aggregates.remove_by_id(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

async fn read_loop(
    mut source: Box<dyn PartitionSource>,
    permits: Arc<Semaphore>,
    consumer: ActorRef<ConsumerMsg>,
) {
    loop {
        let want = permits.available_permits().clamp(1, READ_BATCH);
        let Ok(held) = permits.clone().acquire_many_owned(want as u32).await else {
            return;
        };
        match source.next_batch(want).await {
            Ok(batch) => {
                // Keep one permit per delivery (released on ack), give back the rest.
                let n = batch.len();
                held.forget();
                permits.add_permits(want - n);
                if consumer
                    .send_message(ConsumerMsg::Deliveries(batch))
                    .is_err()
                {
                    return;
                }
            }
            Err(LogError::Closed) => {
                let _ = consumer.send_message(ConsumerMsg::ReaderStopped("log closed".into()));
                return;
            }
            Err(e) => {
                let _ = consumer.send_message(ConsumerMsg::ReaderStopped(e.to_string()));
                return;
            }
        }
    }
}

fn stop_reader(state: &mut ConsumerState) {
    if let Some(reader) = state.reader.take() {
        reader.abort();
    }
}

async fn on_deliveries(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    batch: Vec<Delivery>,
) -> Result<(), ActorProcessingErr> {
    if state.draining.is_some() {
        // Read just before the drain: left unacknowledged, delivered again later.
        return Ok(());
    }
    let mut ids = Vec::with_capacity(batch.len());
    for d in batch {
        if d.redelivery_count > 0 {
            ev::redelivered(state.partition, 1);
        }
        ids.push(d.id);
        state.in_flight.insert(
            d.id,
            InFlight {
                delivery: d,
                work: None,
                attempts: 0,
                dispatched: false,
                held: false,
            },
        );
    }
    dispatch(myself, state, ids).await
}

/// Decodes (once) and sends deliveries to their aggregates or, when they
/// cannot be decoded, to the writer as rejections.
async fn dispatch(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    ids: Vec<u64>,
) -> Result<(), ActorProcessingErr> {
    let parked = order::parked_users(&state.in_flight, &ids);
    let mut by_user: HashMap<String, Vec<Work>> = HashMap::new();
    let mut rejections = Vec::new();
    let mut rejected_ids = Vec::new();
    for id in ids {
        let Some(f) = state.in_flight.get_mut(&id) else {
            continue;
        };
        if f.dispatched {
            continue;
        }
        f.dispatched = true;
        if f.work.is_none() {
            match decode(&f.delivery) {
                Ok(Command::Track(cmd)) => {
                    ev::commands_received(cmd.format.as_str(), 1);
                    f.work = Some(Work {
                        delivery_id: id,
                        command: cmd,
                        published_at_ms: f.delivery.published_at_ms,
                    });
                }
                Ok(Command::BuildInteractionsInfo(b)) => {
                    ev::commands_received("build_interactions_info", 1);
                    if let Some(sink) = &state.sink {
                        saga::answer(
                            myself.clone(),
                            state.store.clone(),
                            sink.clone(),
                            id,
                            b,
                            state.config.write_timeout,
                        );
                        continue;
                    }
                    tracing::info!(saga_id = %b.saga_id, "BuildInteractionsInfo is answered in Pulsar mode only; acknowledged");
                    rejected_ids.push((id, RejectReason::UnknownCommand));
                    rejections.push(Rejection {
                        command_id: derived_id(&f.delivery.identity),
                        reason: RejectReason::UnknownCommand,
                        detail: "BuildInteractionsInfo needs the events topic (Pulsar mode)".into(),
                        rejected_at: Utc::now(),
                    });
                    continue;
                }
                Err(e) => {
                    ev::commands_received("undecodable", 1);
                    ev::command_rejected(e.reason, &e.message);
                    rejected_ids.push((id, e.reason));
                    rejections.push(Rejection {
                        command_id: derived_id(&f.delivery.identity),
                        reason: e.reason,
                        detail: e.message,
                        rejected_at: Utc::now(),
                    });
                    continue;
                }
            }
        }
        if let Some(w) = &f.work {
            if parked.contains(&w.command.user_id) {
                // An older delivery of this user waits for a retry.
                f.dispatched = false;
                f.held = true;
                continue;
            }
            by_user
                .entry(w.command.user_id.clone())
                .or_default()
                .push(w.clone());
        }
    }
    for (user_id, works) in by_user {
        let n = works.len();
        let actor = get_or_spawn(myself, state, &user_id).await?;
        actor.send_message(AggregateMsg::Commands(works))?;
        state.aggregates.dispatched(&user_id, n);
    }
    if !rejections.is_empty() {
        record_rejections(myself, state, rejections, rejected_ids);
    }
    Ok(())
}

fn decode(d: &Delivery) -> Result<Command, crate::domain::codec::DecodeError> {
    let meta = MessageMeta {
        key: d.key.as_deref(),
        properties: Some(&d.properties),
        identity: &d.identity,
        published_at: Utc
            .timestamp_millis_opt(d.published_at_ms)
            .single()
            .unwrap_or_else(Utc::now),
    };
    decode_command(&d.payload, &meta)
}

/// Sends rejections to the writer; the answer comes back as `Settled`.
fn record_rejections(
    myself: &ActorRef<ConsumerMsg>,
    state: &ConsumerState,
    rejections: Vec<Rejection>,
    items: Vec<(u64, RejectReason)>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<WriteReply, WriteFailed>>();
    let sent = match state.names.writer() {
        Some(w) => w
            .send_message(WriterMsg::Write {
                group: None,
                rejections,
                published_at_ms: Vec::new(),
                reply: tx.into(),
            })
            .is_ok(),
        None => false,
    };
    let me = myself.clone();
    let timeout = state.config.write_timeout;
    tokio::spawn(async move {
        let result = match (sent, tokio::time::timeout(timeout, rx).await) {
            (true, Ok(Ok(Ok(_)))) => Ok(()),
            (true, Ok(Ok(Err(f)))) => Err(f),
            _ => Err(WriteFailed {
                retryable: true,
                message: "journal writer unavailable".into(),
            }),
        };
        let _ = me.send_message(ConsumerMsg::Settled { items, result });
    });
}

async fn get_or_spawn(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    user_id: &str,
) -> Result<ActorRef<AggregateMsg>, ActorProcessingErr> {
    if let Some(a) = state.aggregates.get(user_id) {
        return Ok(a);
    }
    let evicted = state.aggregates.make_room();
    ev::passivated("cap", evicted);
    let args = AggregateArgs {
        user_id: user_id.to_string(),
        store: state.store.clone(),
        names: state.names.clone(),
        consumer: myself.clone(),
        write_timeout: state.config.write_timeout,
    };
    let (actor, _handle) =
        Actor::spawn_linked(None, UserAggregate, args, myself.get_cell()).await?;
    state.aggregates.insert(user_id.to_string(), actor.clone());
    Ok(actor)
}

/// Acts on outcomes: acknowledge, or dispatch again after a back-off, or
/// dead-letter when a failing command used up its deliveries.
async fn on_outcomes(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    outcomes: Vec<(u64, Outcome)>,
) -> Result<(), ActorProcessingErr> {
    let mut acked = Vec::new();
    let mut retry: Vec<u64> = Vec::new();
    let mut retry_attempt = 0;
    let mut retry_error = String::new();
    let mut dead = Vec::new();
    for (id, outcome) in outcomes {
        let Some(f) = state.in_flight.get_mut(&id) else {
            continue;
        };
        f.dispatched = false;
        let outcome = match outcome {
            // A refused command goes to the dead-letter destination (the
            // broker's DLQ topic; nothing more for the embedded log, whose
            // rejection record is already durable) before it is acked.
            Outcome::Rejected(reason) => {
                match state
                    .acker
                    .dead_letter(&f.delivery, reason.as_str(), "")
                    .await
                {
                    Ok(()) => Outcome::Rejected(reason),
                    Err(e) => Outcome::Retry {
                        retryable: true,
                        error: format!("dead-lettering failed: {e}"),
                    },
                }
            }
            other => other,
        };
        match outcome {
            Outcome::Persisted | Outcome::Duplicate | Outcome::Rejected(_) | Outcome::Answered => {
                acked.push(id)
            }
            Outcome::Retry { retryable, error } => {
                f.attempts += 1;
                let total = f.attempts + f.delivery.redelivery_count;
                if !retryable && total >= state.config.max_deliveries {
                    dead.push(id);
                } else if state.draining.is_some() {
                    // Not acknowledged: delivered again after the restart.
                    state.in_flight.remove(&id);
                    state.permits.add_permits(1);
                } else {
                    retry_attempt = retry_attempt.max(f.attempts);
                    retry_error = error;
                    retry.push(id);
                }
            }
        }
    }
    if !retry.is_empty() {
        let delay = state.config.backoff(retry_attempt);
        ev::retry_scheduled(state.partition, retry.len(), delay, &retry_error);
        myself.send_after(delay, move || ConsumerMsg::Redeliver(retry));
    }
    if !dead.is_empty() {
        dead_letter(myself, state, dead);
    }
    if !acked.is_empty() {
        for id in &acked {
            state.in_flight.remove(id);
        }
        state.permits.add_permits(acked.len());
        state.acker.ack(&acked).await?;
        state.acks_pending = true;
    }
    finish_drain_if_done(state).await
}

/// Gives up on deliveries: records a `too_many_deliveries` rejection (the
/// embedded dead-letter record) and acknowledges once that is durable.
fn dead_letter(myself: &ActorRef<ConsumerMsg>, state: &mut ConsumerState, ids: Vec<u64>) {
    let mut rejections = Vec::new();
    for id in &ids {
        if let Some(f) = state.in_flight.get_mut(id) {
            f.dispatched = true;
            ev::dead_lettered(RejectReason::TooManyDeliveries, state.partition);
            let command_id = f
                .work
                .as_ref()
                .map(|w| w.command.interaction_id.clone())
                .unwrap_or_else(|| derived_id(&f.delivery.identity));
            rejections.push(Rejection {
                command_id,
                reason: RejectReason::TooManyDeliveries,
                detail: format!("failed {} times", f.attempts + f.delivery.redelivery_count),
                rejected_at: Utc::now(),
            });
        }
    }
    let items = ids
        .into_iter()
        .map(|id| (id, RejectReason::TooManyDeliveries))
        .collect();
    record_rejections(myself, state, rejections, items);
}

async fn commit_acks(state: &mut ConsumerState) -> Result<(), ActorProcessingErr> {
    if state.acks_pending {
        state.acker.commit().await?;
        state.acks_pending = false;
    }
    Ok(())
}

async fn finish_drain_if_done(state: &mut ConsumerState) -> Result<(), ActorProcessingErr> {
    if state.draining.is_some() && state.in_flight.values().all(|f| !f.dispatched) {
        state.in_flight.clear();
        commit_acks(state).await?;
        state.acker.commit().await?;
        if let Some(reply) = state.draining.take() {
            let _ = reply.send(());
        }
    }
    Ok(())
}
