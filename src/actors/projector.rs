//! `Projector`: the actor that keeps the projections (daily stats, status,
//! user stats) behind the journal, on a store whose projections follow the
//! commits (the embedded store).
//!
//! The writer hands it committed journal records in position order. The
//! projector applies them to every projection with
//! [`EventStore::apply_all`]: each projection skips records at or below its
//! own checkpoint and moves the checkpoint in the same atomic write as its
//! rows, so applying twice changes nothing, and a crash between the journal
//! commit and the projections' write only leaves them behind. Behind is
//! repaired from the journal: at start (`pre_start` catches up before the
//! consumers are spawned), when a batch arrives with a gap (a message lost
//! while the actor was restarting), and on a periodic tick that compares
//! the checkpoints with the journal head. The three projections are one
//! actor and one apply, not three: an apply runs on the store's blocking
//! threads (a thread woken and put to sleep again) and commits once, so one
//! apply for the three costs one wake-up and one commit instead of three.
//!
//! Applies are at least [`APPLY_INTERVAL`] apart: records that arrive
//! sooner wait in the buffer and go with the next apply. An apply reads
//! and puts its rows once whatever the records it folds, so fewer, larger
//! applies cost less per event; the stats lag the journal by that much
//! more at most. At a stop the buffer is applied (`post_stop`).

use super::follow::{self, handle_in_order, Follower};
use super::schedule_paced_flush;
use super::subscribers::{subscriber_msg, Subscribers};
use crate::internal_events as ev;
use crate::store::{EventStore, JournalRecord, ProjectionKind, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Records read from the journal per catch-up step.
const CATCH_UP_CHUNK: usize = 4096;
/// How often a projector checks it is not behind the journal.
const TICK: Duration = Duration::from_secs(1);
/// The least time from one apply's start to the next one's: the stats lag
/// the journal by at most this much more (see `writer::COMMIT_INTERVAL`
/// for what it saves).
const APPLY_INTERVAL: Duration = Duration::from_millis(10);

pub enum ProjectorMsg {
    /// Records just committed, in position order.
    Committed(Arc<Vec<JournalRecord>>),
    /// Apply what was buffered (sent by the projector to itself).
    Flush,
    /// Periodic check against the journal head.
    Tick,
}

subscriber_msg!(ProjectorMsg::Committed);

pub struct Projector;

/// The projector's key among the writer's subscribers.
pub const SUBSCRIBER_KEY: &str = "projector";

pub struct ProjectorArgs {
    pub store: Arc<dyn EventStore>,
    /// The writer's subscribers: the projector adds itself once caught up.
    pub subscribers: Subscribers,
}

pub struct ProjectorState {
    store: Arc<dyn EventStore>,
    /// Each projection's checkpoint, in `ProjectionKind::ALL` order.
    checkpoints: [u64; ProjectionKind::COUNT],
    buffer: Vec<Arc<Vec<JournalRecord>>>,
    flush_scheduled: bool,
    /// When the last apply of buffered records started.
    last_apply: Option<Instant>,
    /// `tracking_end_to_end_latency_seconds{stage="projected"}`, registered once.
    projected: ev::EndToEnd,
}

impl Actor for Projector {
    type Msg = ProjectorMsg;
    type State = ProjectorState;
    type Arguments = ProjectorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ProjectorArgs,
    ) -> Result<ProjectorState, ActorProcessingErr> {
        let mut checkpoints = [0; ProjectionKind::COUNT];
        for (cp, kind) in checkpoints.iter_mut().zip(ProjectionKind::ALL) {
            *cp = args.store.checkpoint(kind).await?;
        }
        let mut state = ProjectorState {
            store: args.store,
            checkpoints,
            buffer: Vec::new(),
            flush_scheduled: false,
            last_apply: None,
            projected: ev::EndToEnd::register("projected"),
        };
        catch_up(&mut state, u64::MAX).await?;
        args.subscribers
            .subscribe(SUBSCRIBER_KEY.to_owned(), myself.get_derived());
        myself.send_interval(TICK, || ProjectorMsg::Tick);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: ProjectorMsg,
        state: &mut ProjectorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProjectorMsg::Committed(records) => {
                state.buffer.push(records);
                let pace = (state.last_apply, APPLY_INTERVAL);
                let flush_msg = || ProjectorMsg::Flush;
                if !schedule_paced_flush(&myself, &mut state.flush_scheduled, pace, flush_msg) {
                    flush(state).await;
                }
            }
            ProjectorMsg::Flush => {
                state.flush_scheduled = false;
                flush(state).await;
            }
            ProjectorMsg::Tick => {
                if let Err(e) = catch_up(state, u64::MAX).await {
                    ev::store_error("projection_catch_up", &e);
                }
            }
        }
        Ok(())
    }

    /// Records still buffered (the `Flush` of their timer cannot arrive
    /// once the actor stops) are applied before it is gone.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut ProjectorState,
    ) -> Result<(), ActorProcessingErr> {
        if !state.buffer.is_empty() {
            flush(state).await;
        }
        Ok(())
    }
}

impl Follower for ProjectorState {
    type Error = StoreError;
    const CHUNK: usize = CATCH_UP_CHUNK;

    fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The lowest checkpoint: records above it are applied to every
    /// projection, which skips those it has already.
    fn position(&self) -> u64 {
        self.checkpoints.iter().copied().min().unwrap_or(0)
    }

    async fn handle(&mut self, records: &[JournalRecord]) -> Result<(), StoreError> {
        self.checkpoints = self.store.apply_all(records).await?;
        Ok(())
    }
}

/// Applies what is buffered; on failure the journal still has the
/// records and the tick (or the next start) catches up.
async fn flush(state: &mut ProjectorState) {
    state.last_apply = Some(Instant::now());
    let buffered = std::mem::take(&mut state.buffer);
    if let Err(e) = apply_buffered(state, &buffered).await {
        ev::store_error("projection_apply", &e);
    }
}

async fn apply_buffered(
    state: &mut ProjectorState,
    buffered: &[Arc<Vec<JournalRecord>>],
) -> Result<(), StoreError> {
    let fresh = handle_in_order(state, buffered).await?;
    let started = chrono::Utc::now();
    for r in &fresh {
        if let JournalRecord::Event(e) = r {
            let recorded = e.event.recorded_or_occurred();
            state
                .projected
                .record((started - recorded).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }
    Ok(())
}

/// Catches up from the journal and reports the lag.
async fn catch_up(state: &mut ProjectorState, until: u64) -> Result<(), StoreError> {
    follow::catch_up(state, until).await?;
    let head = state.store.head().await?;
    for (kind, cp) in ProjectionKind::ALL.into_iter().zip(state.checkpoints) {
        ev::projection_lag(kind.as_str(), head.saturating_sub(cp));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InteractionType::Click;
    use crate::store::contract::{group, Fx};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::WriteBatch;

    /// At shutdown the projector is drained: its mailbox closes with the
    /// last `Committed` still queued, so the `Flush` it would send itself
    /// is refused. The records are applied at once instead of failing the
    /// handler (which lost them until the next start and logged a restart).
    /// Records that came within `APPLY_INTERVAL` of the previous apply wait
    /// for a timer that cannot fire once the actor stops: they are applied
    /// in `post_stop`.
    #[tokio::test]
    async fn records_queued_when_the_drain_starts_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let args = ProjectorArgs {
            store: store.clone(),
            subscribers: Default::default(),
        };
        let (projector, handle) = Actor::spawn(None, Projector, args).await.unwrap();
        let fx = Fx::new();
        let user = fx.name("u");
        for seq in 0..2 {
            let batch = WriteBatch {
                groups: vec![group(&user, seq, vec![fx.ev(&user, seq + 1, Click)])],
                ..Default::default()
            };
            store.write(Arc::new(batch)).await.unwrap();
        }
        let records = store.scan(0, usize::MAX).await.unwrap();
        let head = store.head().await.unwrap();
        assert_eq!(records.last().map(JournalRecord::pos), Some(head));

        for r in &records {
            let one = Arc::new(vec![r.clone()]);
            projector
                .send_message(ProjectorMsg::Committed(one))
                .unwrap();
        }
        projector
            .get_cell()
            .drain_and_wait(Some(Duration::from_secs(10)))
            .await
            .unwrap();
        handle.await.unwrap();
        for kind in ProjectionKind::ALL {
            let checkpoint = store.checkpoint(kind).await.unwrap();
            assert_eq!(checkpoint, head, "{kind:?}");
        }
    }
}
