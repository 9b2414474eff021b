//! `PartitionConsumer`: consumes one partition of the command log and
//! supervises the aggregates of the users whose commands it routes.
//!
//! - A reader task pulls batches from the partition, holding one permit of a
//!   semaphore per delivery: at most `max_in_flight` deliveries are
//!   unacknowledged, so a slow store slows consumption instead of growing
//!   memory.
//! - Each delivery is decoded once; undecodable ones are recorded as
//!   rejections through the writer and acknowledged once that is durable.
//!   Commands go to their user's queue ([`flow`]): one batch per user at
//!   its aggregate at a time, so per-user order is kept.
//! - Each batch's outcomes come back as `Processed` (from the journal
//!   writer once the batch's commit is durable, or from the aggregate
//!   after a conflict or a failure); persisted, duplicate and rejected
//!   deliveries are acknowledged (rejected ones dead-lettered first),
//!   retryable failures go back to the front of the user's queue for a
//!   back-off. A panicking aggregate is replaced; the batch it was on is
//!   retried one delivery at a time and a delivery that failed
//!   `max_deliveries` times is dead-lettered. Other users are unaffected.
//! - Aggregates are passivated when idle for `aggregate_idle` or when the
//!   partition's share of `max_live_aggregates` is reached (the one idle
//!   most recently is rebound to the new user), only when they have
//!   nothing outstanding: passivation and
//!   routing happen in this one actor, so no message can reach an aggregate
//!   that is stopping.

mod flow;
mod outcomes;
mod passivation;
mod reroute;
pub(in crate::actors) mod route;
mod saga;
#[cfg(test)]
mod tests;

pub use super::aggregate::{Outcome, Processed, Reports, Work};
use super::writer::WriteFailed;
use super::{Names, PipelineConfig};
use crate::domain::codec::Command;
use crate::domain::RejectReason;
use crate::health::Health;
use crate::internal_events as ev;
use crate::log::{Acker, CommandLog, Delivery, EventSink, LogError, PartitionSource};
use crate::store::EventStore;
use flow::{Flow, InFlight};
use outcomes::{
    ack, commit_acks, decode, finish_drain_if_done, on_outcomes, record_rejections, rejection,
    settle_rejections,
};
use passivation::Aggregates;
use ractor::{
    Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort, SupervisionEvent,
};
use route::{answer_saga, on_deliveries, send_next};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Deliveries the reader takes from the log at once (at most).
const READ_BATCH: usize = 1024;

pub enum ConsumerMsg {
    /// Deliveries read from the partition (from the reader task).
    Deliveries(Vec<Delivery>),
    /// Outcomes of users' batches: one from an aggregate, or those of a
    /// commit from the writer.
    Processed(Vec<Processed>),
    /// Rejections recorded (or not) by the writer for deliveries that never
    /// reached an aggregate (undecodable or dead-lettered).
    Settled {
        items: Vec<(u64, RejectReason)>,
        result: Result<(), WriteFailed>,
    },
    /// A `BuildInteractionsInfo` answer was published (or not).
    Answered { id: u64, result: Result<(), String> },
    /// Answer this `BuildInteractionsInfo` again (after a back-off).
    Reanswer(u64),
    /// A user's back-off ended: send its queue again.
    Resume(String),
    /// Record these refused deliveries again (the writer failed before).
    Rerecord(Vec<u64>),
    /// A misrouted command was published again to its user's partition
    /// (or not) (see `reroute`).
    Rerouted { id: u64, result: Result<(), String> },
    /// Publish this misrouted command again (after a back-off).
    Reroute(u64),
    /// Periodic: commit acks, passivate idle aggregates.
    Tick,
    /// The reader task stopped (log closed or failed).
    ReaderStopped(String),
    /// Stop reading, finish what is in flight, commit, then answer.
    Drain(RpcReplyPort<()>),
}

/// An aggregate (or the writer, settling batches the aggregates handed it)
/// reports to its consumer through a `DerivedActorRef<Reports>` (the
/// aggregate owns its protocol and never names this actor's messages).
impl From<Reports> for ConsumerMsg {
    fn from(r: Reports) -> Self {
        ConsumerMsg::Processed(r.0)
    }
}

impl TryFrom<ConsumerMsg> for Reports {
    type Error = ConsumerMsg;

    fn try_from(m: ConsumerMsg) -> Result<Self, ConsumerMsg> {
        match m {
            ConsumerMsg::Processed(reports) => Ok(Reports(reports)),
            other => Err(other),
        }
    }
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
    log: Arc<dyn CommandLog>,
    /// Misrouted commands go to their user's partition (see `reroute`).
    reroute: bool,
    store: Arc<dyn EventStore>,
    names: Names,
    health: Arc<Health>,
    config: PipelineConfig,
    acker: Arc<dyn Acker>,
    permits: Arc<Semaphore>,
    reader: Option<JoinHandle<()>>,
    flow: Flow,
    aggregates: Aggregates,
    draining: Option<RpcReplyPort<()>>,
    acks_pending: bool,
    sink: Option<Arc<dyn EventSink>>,
    /// Where this partition's aggregates report, one for all of them: each
    /// batch's handoff clones it, and a clone of a shared one touches a
    /// reference count the CPU's caches hold (one per aggregate would be a
    /// cold one per batch with many users).
    reports: DerivedActorRef<Reports>,
    /// Metric handles registered once (see `internal_events::pipeline`).
    in_flight: ev::InFlight,
    processing: ev::Processing,
}

impl ConsumerState {
    /// The back-off before delivery `id` is tried again after `error`
    /// (counted, and logged at most once per window).
    fn retry_delay(&mut self, id: u64, error: &dyn std::fmt::Display) -> std::time::Duration {
        let attempt = self.flow.get_mut(id).map_or(1, |f| {
            f.attempts += 1;
            f.attempts
        });
        let delay = self.config.backoff(attempt);
        ev::retry_scheduled(self.partition, 1, delay, error);
        delay
    }
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
            reroute: a.store.journal_guard() == crate::store::JournalGuard::Deterministic,
            log: a.log.clone(),
            store: a.store,
            names: a.names,
            aggregates: Aggregates::new(a.health.clone(), a.aggregate_cap, a.config.aggregate_idle),
            health: a.health,
            config: a.config,
            acker,
            permits,
            reader: Some(reader),
            flow: Flow::default(),
            draining: None,
            acks_pending: false,
            sink: a.sink,
            reports: myself.get_derived(),
            in_flight: ev::InFlight::register(a.partition),
            processing: ev::Processing::register(),
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
        state.in_flight.set(0);
        state.acker.flush().await?;
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
            ConsumerMsg::Processed(reports) => {
                for Processed { user_id, outcomes } in reports {
                    state.aggregates.completed(&user_id, 1);
                    let all_ok = outcomes
                        .iter()
                        .all(|(_, o)| !matches!(o, Outcome::Retry { .. }));
                    state.flow.answered(&user_id, all_ok);
                    on_outcomes(&myself, state, &user_id, outcomes).await?;
                }
            }
            ConsumerMsg::Settled { items, result } => {
                state.flow.settling(-(items.len() as isize));
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
                settle_rejections(&myself, state, outcomes).await?;
            }
            ConsumerMsg::Answered { id, result } => {
                state.flow.settling(-1);
                match result {
                    Ok(()) => ack(state, &[id]).await?,
                    Err(error) => {
                        let delay = state.retry_delay(id, &error);
                        myself.send_after(delay, move || ConsumerMsg::Reanswer(id));
                    }
                }
            }
            ConsumerMsg::Rerouted { id, result } => {
                reroute::on_rerouted(&myself, state, id, result).await?;
            }
            ConsumerMsg::Reroute(id) => {
                if state.draining.is_some() {
                    if state.flow.remove(id).is_some() {
                        state.permits.add_permits(1);
                    }
                } else if let Some(Ok(Command::Track(cmd))) =
                    state.flow.get(id).map(|f| decode(&f.delivery))
                {
                    reroute::reroute(&myself, state, id, cmd.user_id, cmd.interaction_id);
                }
            }
            ConsumerMsg::Reanswer(id) => {
                if state.draining.is_some() {
                    if state.flow.remove(id).is_some() {
                        state.permits.add_permits(1);
                    }
                } else if let Some(Ok(Command::BuildInteractionsInfo(b))) =
                    state.flow.get(id).map(|f| decode(&f.delivery))
                {
                    answer_saga(&myself, state, id, b);
                }
            }
            ConsumerMsg::Resume(user_id) => {
                state.flow.resume(&user_id);
                if state.draining.is_none() {
                    send_next(&myself, state, &user_id).await?;
                }
            }
            ConsumerMsg::Rerecord(ids) => {
                if state.draining.is_some() {
                    for id in &ids {
                        state.flow.remove(*id);
                    }
                    state.permits.add_permits(ids.len());
                } else {
                    let mut rejections = Vec::new();
                    let mut items = Vec::new();
                    for id in ids {
                        if let Some(f) = state.flow.get(id) {
                            let reason = f.refused.unwrap_or(RejectReason::TooManyDeliveries);
                            rejections.push(rejection(
                                &f.delivery,
                                reason,
                                "recorded again".into(),
                            ));
                            items.push((id, reason));
                        }
                    }
                    record_rejections(&myself, state, rejections, items);
                }
            }
            ConsumerMsg::Tick => {
                commit_acks(state).await?;
                // Counted by it (`tracking_aggregates_passivated_total`).
                state.aggregates.passivate_idle();
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
                // What waits in a queue or a back-off is left unacknowledged:
                // delivered again after the restart.
                let dropped = state.flow.drop_waiting();
                state.permits.add_permits(dropped);
                state.draining = Some(reply);
            }
        }
        finish_drain_if_done(state).await?;
        state.in_flight.set(state.flow.len());
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
                // The batch it was on is retried one delivery at a time, and
                // dead-lettered once a delivery used up its deliveries.
                let batch = state.flow.aggregate_failed(&user_id);
                let error = format!("aggregate failed: {error}");
                let outcomes = batch
                    .into_iter()
                    .map(|id| {
                        let o = Outcome::Retry {
                            retryable: false,
                            error: error.clone(),
                        };
                        (id, o)
                    })
                    .collect();
                on_outcomes(&myself, state, &user_id, outcomes).await?;
                finish_drain_if_done(state).await?;
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
                let n = batch.len().min(want);
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
