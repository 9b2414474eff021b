//! `Projector`: one actor per projection (daily stats, status, user stats).
//!
//! The writer hands it committed journal records in position order. The
//! projector applies them with [`EventStore::apply`], which skips records at
//! or below the projection's checkpoint and moves the checkpoint in the same
//! atomic write as the rows: applying twice changes nothing, and a crash
//! between the journal commit and the projection write only leaves the
//! projection behind. Behind is repaired from the journal: at start
//! (`pre_start` catches up before the consumers are spawned), when a batch
//! arrives with a gap (a message lost while the actor was restarting), and
//! on a periodic tick that compares the checkpoint with the journal head.
//!
//! Applies are at least [`APPLY_INTERVAL`] apart: records that arrive
//! sooner wait in the buffer and go with the next apply. An apply runs on
//! the store's blocking threads (a thread woken and put to sleep again),
//! and reads and puts its rows once whatever the records it folds, so
//! fewer, larger applies cost less per event; the stats lag the journal by
//! that much more at most. At a stop the buffer is applied (`post_stop`).

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
pub fn subscriber_key(kind: ProjectionKind) -> String {
    format!("projector/{}", kind.as_str())
}

pub struct ProjectorArgs {
    pub kind: ProjectionKind,
    pub store: Arc<dyn EventStore>,
    /// The writer's subscribers: the projector adds itself once caught up.
    pub subscribers: Subscribers,
}

pub struct ProjectorState {
    kind: ProjectionKind,
    store: Arc<dyn EventStore>,
    checkpoint: u64,
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
        let checkpoint = args.store.checkpoint(args.kind).await?;
        let mut state = ProjectorState {
            kind: args.kind,
            store: args.store,
            checkpoint,
            buffer: Vec::new(),
            flush_scheduled: false,
            last_apply: None,
            projected: ev::EndToEnd::register("projected"),
        };
        catch_up(&mut state, u64::MAX).await?;
        args.subscribers
            .subscribe(subscriber_key(args.kind), myself.get_derived());
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

    fn position(&self) -> u64 {
        self.checkpoint
    }

    async fn handle(&mut self, records: &[JournalRecord]) -> Result<(), StoreError> {
        self.checkpoint = self.store.apply(self.kind, records).await?;
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
    ev::projection_lag(state.kind.as_str(), head.saturating_sub(state.checkpoint));
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
            kind: ProjectionKind::Status,
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
        let checkpoint = store.checkpoint(ProjectionKind::Status).await.unwrap();
        assert_eq!(checkpoint, head);
    }
}
