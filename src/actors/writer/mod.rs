//! `JournalWriter`: the single writer of the journal, doing group commit.
//!
//! Aggregates hand their decided batches over through the writer's
//! [`intake`] (and wake it with [`WriterMsg::Wake`] when it has nothing
//! yet); callers that wait for the answer (an aggregate after a conflict,
//! consumers for commands that never reach an aggregate) send
//! [`WriterMsg::Write`]. The writer collects every request in its intake
//! and its mailbox, commits them with one [`EventStore::write`] (one fsync), and
//! only then answers each request (or settles an aggregate's handed-off
//! batch, reporting it to the consumer: [`super::handoff`]) and hands the
//! committed records, in position order, to the projectors. Batching needs
//! no timer: while a commit is in progress new requests queue up, and the
//! `Flush` the writer sends itself lands behind them. Callers wait for the
//! answer without a timer (the wait behind a backlog is bounded by the
//! consumers' in-flight window, a commit by the store's own timeouts).
//! Requests whose caller stopped (an aggregate stopped with its consumer)
//! are left out of the commit: their deliveries come again.
//!
//! On a store whose projectors follow the commits (the embedded store),
//! commits start at least [`COMMIT_INTERVAL`] apart: each commit costs a
//! blocking thread's wake-up, an fsync and an apply per projector whatever
//! its size, so fewer, larger commits cost less per event, for at most
//! that much more before a delivery is acknowledged.

mod intake;

pub use intake::{Intake, Pushed};

use super::handoff::{Handoff, ReportBatch};
use super::schedule_paced_flush;
use super::subscribers::Subscribers;
use crate::domain::Rejection;
use crate::health::Health;
use crate::internal_events as ev;
use crate::log::Source;
use crate::store::{
    AppendGroup, EventStore, GroupOutcome, JournalGuard, JournalRecord, ProjectionMode, StoreError,
    StoredEvent, StoredRejection, WriteBatch,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time from one commit's start to the next one's, on a store
/// whose projectors follow the commits (`WriterArgs::commit_interval`).
/// 4 ms rather than 2 (with the projectors' 10 ms rather than 5): 30.2
/// against 32.8 µs of CPU per event in `pipeline-profile.sh`, lower in
/// each of three interleaved pairs, for 2 ms more before a delivery is
/// acknowledged (far below the end-to-end p99 bar of 50 ms).
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(4);

/// The answer to one write request.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReply {
    /// Outcome of the group, if the request carried one.
    pub group: Option<GroupOutcome>,
}

/// A failed commit, as seen by the requester. Retryable when the store
/// said so (the requester backs off and tries again).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WriteFailed {
    pub retryable: bool,
    pub message: String,
}

impl From<&StoreError> for WriteFailed {
    fn from(e: &StoreError) -> Self {
        Self {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

// `Write` carries its request inline: boxing it would allocate per call,
// to shrink `Wake` and `Flush`, a message or two per commit.
#[allow(clippy::large_enum_variant)]
pub enum WriterMsg {
    /// Append a user's events (optional) and record rejections, durably,
    /// for a caller that waits for the answer.
    Write(Pending),
    /// Requests wait in the intake (sent by the first request since the
    /// last commit, and for a full batch).
    Wake,
    /// Commit what is pending (sent by the writer to itself).
    Flush,
}

/// Who hears of a request's commit.
pub enum Requester {
    /// A caller waiting for the answer.
    Waiting(RpcReplyPort<Result<WriteReply, WriteFailed>>),
    /// An aggregate's decided batch, settled by the writer.
    HandedOff(Handoff),
}

impl Requester {
    /// A caller that stopped waiting (a handed-off batch is always
    /// settled: it reports to the consumer, not to a waiting caller).
    fn is_closed(&self) -> bool {
        match self {
            Requester::Waiting(port) => port.is_closed(),
            Requester::HandedOff(_) => false,
        }
    }

    fn answer(self, answer: Result<WriteReply, WriteFailed>, reports: &mut ReportBatch) {
        match self {
            Requester::Waiting(port) => {
                let _ = port.send(answer);
            }
            Requester::HandedOff(handoff) => handoff.settle(answer, reports),
        }
    }
}

pub struct JournalWriter;

pub struct WriterArgs {
    /// Who receives each commit's records (projectors, publisher, observers).
    pub subscribers: Subscribers,
    pub store: Arc<dyn EventStore>,
    pub health: Arc<Health>,
    pub max_batch: usize,
    /// The least time between the starts of two commits (a full batch
    /// does not wait).
    pub commit_interval: Duration,
    /// The intake it opens (the service's, in `Names`).
    pub intake: Arc<Intake>,
}

/// A request to commit, from the mailbox or the intake.
pub struct Pending {
    group: Option<AppendGroup>,
    rejections: Vec<Rejection>,
    /// Where each rejected command is in the command log (same order; may
    /// be empty for stores that do not need it).
    rejection_sources: Vec<Source>,
    /// Milliseconds since the epoch at which the commands were published
    /// (for the end-to-end latency of the persisted stage).
    published_at_ms: Vec<i64>,
    reply: Requester,
}

impl Pending {
    pub fn new(
        group: Option<AppendGroup>,
        rejections: Vec<Rejection>,
        rejection_sources: Vec<Source>,
        published_at_ms: Vec<i64>,
        reply: Requester,
    ) -> Self {
        Self {
            group,
            rejections,
            rejection_sources,
            published_at_ms,
            reply,
        }
    }

    /// Events and rejections the request adds to a commit.
    fn events(&self) -> usize {
        self.group.as_ref().map_or(0, |g| g.events.len()) + self.rejections.len()
    }
}

pub struct WriterState {
    subscribers: Subscribers,
    store: Arc<dyn EventStore>,
    health: Arc<Health>,
    max_batch: usize,
    pending: Vec<Pending>,
    pending_events: usize,
    flush_scheduled: bool,
    commit_interval: Duration,
    /// When the last commit started.
    last_commit: Option<tokio::time::Instant>,
    /// `tracking_end_to_end_latency_seconds{stage="persisted"}`, registered once.
    persisted: ev::EndToEnd,
    /// Permits of concurrent commits (deterministic stores; `None`: one
    /// commit at a time, in order).
    concurrent: Option<Arc<tokio::sync::Semaphore>>,
    intake: Arc<Intake>,
    /// This writer's epoch of the intake.
    epoch: u64,
}

impl Drop for WriterState {
    /// A writer that failed drops what waits in its intake: each handoff
    /// reports its batch retryable (after a graceful stop, `post_stop`
    /// closed it already).
    fn drop(&mut self) {
        drop(self.intake.close(self.epoch));
    }
}

impl Actor for JournalWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        let max_batch = args.max_batch.min(args.store.max_commit_events()).max(1);
        let concurrent = (args.store.journal_guard() == JournalGuard::Deterministic)
            .then(|| Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_COMMITS)));
        let epoch = args.intake.open(max_batch);
        // What a failed writer's intake still held before this one opened
        // it (no sender will wake this writer for it).
        if let Err(e) = myself.send_message(WriterMsg::Wake) {
            drop(args.intake.close(epoch));
            return Err(e.into());
        }
        Ok(WriterState {
            subscribers: args.subscribers,
            store: args.store,
            health: args.health,
            max_batch,
            pending: Vec::new(),
            pending_events: 0,
            flush_scheduled: false,
            commit_interval: args.commit_interval,
            last_commit: None,
            persisted: ev::EndToEnd::register("persisted"),
            concurrent,
            intake: args.intake,
            epoch,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WriterMsg::Write(p) => {
                state.pending_events += p.events();
                state.pending.push(p);
                requests_waiting(&myself, state).await;
            }
            WriterMsg::Wake => requests_waiting(&myself, state).await,
            WriterMsg::Flush => {
                state.flush_scheduled = false;
                commit(state).await;
                // What did not fit in the commit.
                requests_waiting(&myself, state).await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        // Requests still pending are committed and answered; nothing
        // enters the intake any more.
        let left = state.intake.close(state.epoch);
        state.pending_events += left.iter().map(Pending::events).sum::<usize>();
        state.pending.extend(left);
        while !state.pending.is_empty() {
            commit(state).await;
        }
        Ok(())
    }
}

/// Requests wait (in the mailbox's `Write`s or the intake): a full batch,
/// or a mailbox closed by the drain at shutdown, is committed now;
/// otherwise once what is queued is in, and no sooner than the interval
/// after the last commit (requests still waiting at a stop: `post_stop`).
async fn requests_waiting(myself: &ActorRef<WriterMsg>, state: &mut WriterState) {
    while !(state.pending.is_empty() && state.intake.is_empty()) {
        let full = state.pending_events + state.intake.events() >= state.max_batch;
        let pace = (state.last_commit, state.commit_interval);
        let flush_msg = || WriterMsg::Flush;
        if !full && schedule_paced_flush(myself, &mut state.flush_scheduled, pace, flush_msg) {
            return;
        }
        commit(state).await;
    }
}

/// Commits the oldest requests (the mailbox's, then the intake's) up to
/// `max_batch` events, answers the requesters, feeds the projectors.
async fn commit(state: &mut WriterState) {
    let mut pending = intake::take_fitting(&mut state.pending, state.max_batch);
    let taken: usize = pending.iter().map(Pending::events).sum();
    state.pending_events = state.pending_events.saturating_sub(taken);
    let room = state.max_batch.saturating_sub(taken);
    pending.append(&mut state.intake.take(room));
    if pending.is_empty() {
        return;
    }
    state.last_commit = Some(tokio::time::Instant::now());
    // A requester that stopped while its request waited here (its
    // consumer restarted or drained) will never see the answer, and its
    // deliveries come again: writing it now would be work for nothing.
    let before = pending.len();
    pending.retain(|p| !p.reply.is_closed());
    if pending.len() < before {
        ev::writes_abandoned(before - pending.len());
    }
    if pending.is_empty() {
        return;
    }
    let events: usize = pending.iter().map(Pending::events).sum();
    let mut batch = WriteBatch::default();
    // Index of each request's group in `batch.groups`, and its rejections
    // range (moved into the batch, not copied).
    let mut slots: Slots = Vec::with_capacity(pending.len());
    for p in &mut pending {
        let g = p.group.take().map(|g| {
            batch.groups.push(g);
            batch.groups.len() - 1
        });
        let start = batch.rejections.len();
        batch.rejections.append(&mut p.rejections);
        batch.rejection_sources.append(&mut p.rejection_sources);
        slots.push((g, start..batch.rejections.len()));
    }
    let batch = Arc::new(batch);
    let done = Commit {
        store: state.store.clone(),
        health: state.health.clone(),
        subscribers: state.subscribers.clone(),
        persisted: state.persisted.clone(),
        broadcast: state.store.projection_mode() != ProjectionMode::Folded,
    };
    match &state.concurrent {
        // Commits of a deterministic store are independent of each other
        // (a user has one batch in flight at most, and nothing orders
        // commits), so several run at once; the writer waits only when
        // `MAX_CONCURRENT_COMMITS` are.
        Some(permits) => {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(async move {
                done.run(batch, pending, slots, events).await;
                drop(permit);
            });
        }
        None => done.run(batch, pending, slots, events).await,
    }
}

/// Commits at once, at most, on a deterministic store.
const MAX_CONCURRENT_COMMITS: usize = 4;

/// What a commit needs once its batch is built.
struct Commit {
    store: Arc<dyn EventStore>,
    health: Arc<Health>,
    subscribers: Subscribers,
    persisted: ev::EndToEnd,
    /// Hand the committed records to the projectors (stores they follow).
    broadcast: bool,
}

type Slots = Vec<(Option<usize>, std::ops::Range<usize>)>;

impl Commit {
    /// Writes the batch, answers the requesters, feeds the projectors.
    async fn run(self, batch: Arc<WriteBatch>, pending: Vec<Pending>, slots: Slots, events: usize) {
        let started = Instant::now();
        let result = self.store.write(batch.clone()).await;
        ev::store_write(started.elapsed().as_secs_f64(), events);
        self.health.store_result(result.is_ok());
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                ev::store_error("write", &e);
                let failed = WriteFailed::from(&e);
                let mut reports = ReportBatch::default();
                for p in pending {
                    p.reply.answer(Err(failed.clone()), &mut reports);
                }
                reports.send();
                return;
            }
        };
        // The store is done with the batch: its events move into the
        // records handed to the subscribers (a copy only if another
        // holder of the batch remains).
        let mut batch = Arc::unwrap_or_clone(batch);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut records: Vec<JournalRecord> = Vec::new();
        let mut persisted = 0u64;
        let mut reports = ReportBatch::default();
        for (p, (g, rej_range)) in pending.into_iter().zip(slots) {
            let mut group =
                g.and_then(|i| Some((outcome.groups.get(i)?.clone(), batch.groups.get_mut(i)?)));
            if let Some((
                GroupOutcome::Appended {
                    first_pos,
                    first_seq,
                },
                appended,
            )) = group.as_mut()
            {
                persisted += appended.events.len() as u64;
                if self.broadcast {
                    // Numbered as written (the store may have numbered them).
                    let events = std::mem::take(&mut appended.events);
                    for (k, mut e) in events.into_iter().enumerate() {
                        e.seq = *first_seq + k as u64;
                        records.push(JournalRecord::Event(StoredEvent::new(
                            *first_pos + k as u64,
                            e,
                        )));
                    }
                }
                for published in &p.published_at_ms {
                    self.persisted.record((now_ms - published) as f64 / 1000.0);
                }
            }
            if self.broadcast {
                for i in rej_range {
                    if let (Some(Some(pos)), Some(r)) =
                        (outcome.rejections.get(i), batch.rejections.get(i))
                    {
                        records.push(JournalRecord::Rejection(StoredRejection {
                            pos: *pos,
                            rejection: r.clone(),
                        }));
                    }
                }
            }
            p.reply.answer(
                Ok(WriteReply {
                    group: group.map(|(o, _)| o),
                }),
                &mut reports,
            );
        }
        reports.send();
        ev::events_persisted(persisted);
        if !records.is_empty() {
            records.sort_by_key(JournalRecord::pos);
            self.subscribers.publish(Arc::new(records));
        }
    }
}

/// The real writer on `store`, registered under `names` (tests).
#[cfg(test)]
pub(super) async fn spawn_for_test(
    store: &Arc<dyn EventStore>,
    names: &crate::actors::Names,
) -> Result<(ActorRef<WriterMsg>, ractor::concurrency::JoinHandle<()>), ractor::SpawnErr> {
    let args = WriterArgs {
        subscribers: Subscribers::default(),
        store: store.clone(),
        health: Arc::new(Health::default()),
        max_batch: 64,
        commit_interval: COMMIT_INTERVAL,
        intake: names.writer_intake().clone(),
    };
    Actor::spawn(Some(names.writer_name()), JournalWriter, args).await
}

#[cfg(test)]
mod tests;
