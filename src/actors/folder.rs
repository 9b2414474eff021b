//! `Folder`: the follower of one partition of the command log for a store
//! whose projections are folded behind the journal
//! ([`ProjectionMode::Folded`](crate::store::ProjectionMode), the ScyllaDB
//! store). One per partition in every worker; the one holding the
//! partition's lease does the work, the others wait to take over.
//!
//! Every `interval` (a timer, no sleeping in the handler) the leaseholder
//! asks the log how far the partition is acknowledged, reads the journal's
//! records after its checkpoint up to there, publishes their events to the
//! events topic (Pulsar mode: at least once, in log order, so in seq order
//! per user), then folds them into the indexes and statistics, which moves
//! the checkpoint. A failure leaves the checkpoint where it was; the next
//! tick starts again from it (the events may be published twice).
//!
//! The lease only saves work: two followers of a partition write the same
//! rows, and a slow one's older values never win (see `store::scylladb::fold`).

use crate::internal_events as ev;
use crate::log::{CommandLog, EventSink, Position};
use crate::store::{EventStore, FoldCheckpoint, JournalRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records read and folded per step; a tick takes up to [`STEPS_PER_TICK`].
const CHUNK: usize = 2048;
const STEPS_PER_TICK: usize = 16;
/// How long a lease lasts, and how often the holder renews it.
const LEASE_TTL: Duration = Duration::from_secs(10);
const LEASE_RENEW: Duration = Duration::from_secs(3);

pub enum FolderMsg {
    Tick,
}

pub struct Folder;

pub struct FolderArgs {
    pub partition: u32,
    pub log: Arc<dyn CommandLog>,
    pub store: Arc<dyn EventStore>,
    /// The events topic (Pulsar mode).
    pub sink: Option<Arc<dyn EventSink>>,
    /// This process's name in the leases.
    pub owner: String,
    pub interval: Duration,
}

pub struct FolderState {
    args: FolderArgs,
    /// Where this follower stands (`None`: read it from the store).
    checkpoint: Option<FoldCheckpoint>,
    /// Whether it holds the lease, and when to renew or try again.
    leased: bool,
    lease_due: Instant,
}

impl Actor for Folder {
    type Msg = FolderMsg;
    type State = FolderState;
    type Arguments = FolderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: FolderArgs,
    ) -> Result<FolderState, ActorProcessingErr> {
        if args.store.folding().is_none() {
            return Err("a folder needs a store that folds its projections".into());
        }
        myself.send_interval(args.interval, || FolderMsg::Tick);
        Ok(FolderState {
            args,
            checkpoint: None,
            leased: false,
            lease_due: Instant::now(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: FolderMsg,
        state: &mut FolderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FolderMsg::Tick => tick(state).await,
        }
        Ok(())
    }
}

async fn tick(state: &mut FolderState) {
    let a = &state.args;
    let Some(fold) = a.store.folding() else {
        return;
    };
    if Instant::now() >= state.lease_due {
        match fold.lease(a.partition, &a.owner, LEASE_TTL).await {
            Ok(held) => {
                if held != state.leased {
                    ev::fold_lease(a.partition, held);
                }
                state.leased = held;
                state.lease_due = Instant::now() + LEASE_RENEW;
            }
            Err(e) => {
                ev::store_error("fold_lease", &e);
                state.leased = false;
            }
        }
    }
    if !state.leased {
        state.checkpoint = None;
        return;
    }
    // Where the log is acknowledged costs the broker an admin request:
    // asked only when the journal holds records after the checkpoint.
    let mut through = None;
    for _ in 0..STEPS_PER_TICK {
        let from = match state.checkpoint {
            Some(cp) => cp,
            None => match fold.checkpoint(a.partition).await {
                Ok(cp) => cp,
                Err(e) => {
                    ev::fold_failed(a.partition, "checkpoint", &e);
                    return;
                }
            },
        };
        state.checkpoint = Some(from);
        let through = match through {
            Some(t) => t,
            None => {
                match fold
                    .read(a.partition, from.position, Position::MAX, 1)
                    .await
                {
                    Ok(r) if r.is_empty() => return,
                    Ok(_) => {}
                    Err(e) => {
                        ev::fold_failed(a.partition, "read", &e);
                        return;
                    }
                }
                match a.log.acked_through(a.partition).await {
                    Ok(Some(p)) => *through.insert(p),
                    Ok(None) => return,
                    Err(e) => {
                        ev::fold_failed(a.partition, "acked position", &e);
                        return;
                    }
                }
            }
        };
        if from.position.is_some_and(|p| p >= through) {
            return;
        }
        let records = match fold.read(a.partition, from.position, through, CHUNK).await {
            Ok(r) => r,
            Err(e) => {
                ev::fold_failed(a.partition, "read", &e);
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        if let Some(sink) = &a.sink {
            let messages: Vec<_> = records
                .iter()
                .map(|r| &r.record)
                .filter(|r| matches!(r, JournalRecord::Event(_)))
                .filter_map(super::publisher::outbound)
                .collect();
            let n = messages.len() as u64;
            if !messages.is_empty() {
                if let Err(e) = sink.publish(messages).await {
                    ev::fold_failed(a.partition, "publish", &e);
                    return;
                }
                ev::events_published(n);
            }
        }
        match fold.fold(a.partition, from, &records).await {
            Ok(to) => {
                ev::folded(a.partition, to.folded - from.folded);
                state.checkpoint = Some(to);
                if records.len() < CHUNK && to.folded - from.folded == records.len() as u64 {
                    return;
                }
            }
            Err(e) => {
                // Another follower moved on, or the store failed: start
                // again from the stored checkpoint.
                ev::fold_failed(a.partition, "fold", &e);
                state.checkpoint = None;
                return;
            }
        }
    }
}
