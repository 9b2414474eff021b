//! `RootSupervisor`: spawns and supervises the writer, the projectors and
//! one consumer per partition.
//!
//! Policy (one-for-one): a failed child is restarted after a back-off
//! (`retry_base` doubling up to `retry_max`). More than `max_restarts`
//! failures within `restart_window` escalate: the supervisor stops with an
//! error, `run` returns it and the process exits non-zero, so Kubernetes
//! restarts the pod with a clean slate. The order of spawning matters:
//! projectors catch up from the journal before any consumer starts, and
//! the writer exists before anything can write.

use super::consumer::{ConsumerArgs, ConsumerMsg, PartitionConsumer};
use super::folder::{Folder, FolderArgs};
use super::projector::{Projector, ProjectorArgs};
use super::publisher::{EventPublisher, PublisherArgs};
use super::subscribers::Subscribers;
use super::writer::{self, JournalWriter, WriterArgs};
use super::{Names, PipelineConfig};
use crate::health::Health;
use crate::internal_events as ev;
use crate::log::{CommandLog, EventSink};
use crate::store::{EventStore, ProjectionKind, ProjectionMode};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Child {
    Writer,
    Projector(ProjectionKind),
    Publisher,
    Consumer(u32),
    Folder(u32),
}

impl Child {
    fn kind(self) -> &'static str {
        match self {
            Child::Writer => "writer",
            Child::Projector(_) => "projector",
            Child::Publisher => "publisher",
            Child::Consumer(_) => "consumer",
            Child::Folder(_) => "folder",
        }
    }
}

pub enum SupervisorMsg {
    /// Restart a child (sent to itself after the back-off).
    Restart(Child),
    /// Graceful stop: drain the consumers, then let the writer and the
    /// projectors finish what is queued, then answer.
    Drain(RpcReplyPort<()>),
}

pub struct RootSupervisor;

pub struct SupervisorArgs {
    pub log: Arc<dyn CommandLog>,
    pub store: Arc<dyn EventStore>,
    pub health: Arc<Health>,
    pub config: PipelineConfig,
    pub names: Names,
    /// The writer's subscribers (the projectors and the publisher add
    /// themselves; the embedding code may add observers).
    pub subscribers: Subscribers,
    /// The events topic (Pulsar mode): the event publisher and the answers
    /// to `BuildInteractionsInfo` go there.
    pub sink: Option<Arc<dyn EventSink>>,
}

pub struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ActorId, Child>,
    consumers: HashMap<u32, ActorRef<ConsumerMsg>>,
    folders: Vec<ActorRef<super::folder::FolderMsg>>,
    failures: VecDeque<Instant>,
    attempts: HashMap<Child, u32>,
    draining: bool,
    /// This process's name in the followers' leases.
    owner: String,
}

impl Actor for RootSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let partitions = args.log.partitions();
        let mut state = SupervisorState {
            args,
            children: HashMap::new(),
            consumers: HashMap::new(),
            folders: Vec::new(),
            failures: VecDeque::new(),
            attempts: HashMap::new(),
            draining: false,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        };
        spawn_child(&myself, &mut state, Child::Writer).await?;
        // Projectors and the publisher follow the journal by store-wide
        // position (the embedded store); a store that folds its
        // projections behind the journal (ScyllaDB) has a follower per
        // partition of the log instead, which also publishes the events.
        let folded = state.args.store.projection_mode() == ProjectionMode::Folded;
        if !folded {
            for kind in ProjectionKind::ALL {
                spawn_child(&myself, &mut state, Child::Projector(kind)).await?;
            }
            if state.args.sink.is_some() {
                spawn_child(&myself, &mut state, Child::Publisher).await?;
            }
        }
        for p in 0..partitions {
            spawn_child(&myself, &mut state, Child::Consumer(p)).await?;
        }
        if folded {
            for p in 0..partitions {
                spawn_child(&myself, &mut state, Child::Folder(p)).await?;
            }
        }
        state.args.health.set_started(partitions);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(child) => {
                if !state.draining {
                    if let Err(e) = spawn_child(&myself, state, child).await {
                        // A failed restart counts as a failure too.
                        on_failure(&myself, state, child, &e.to_string())?;
                    }
                }
            }
            SupervisorMsg::Drain(reply) => {
                state.draining = true;
                state.args.health.set_draining();
                let timeout = Some(Duration::from_secs(3600));
                let drains: Vec<_> = state
                    .consumers
                    .values()
                    .map(|c| c.call(ConsumerMsg::Drain, timeout))
                    .collect();
                for d in futures::future::join_all(drains).await {
                    if let Err(e) = d {
                        tracing::warn!(error = %e, "a consumer did not drain");
                    }
                }
                for c in state.consumers.values() {
                    c.stop(None);
                }
                // The writer answers every request it holds; projectors apply
                // what they received. Stop them in that order, by message,
                // so their queues are processed first.
                let grace = Some(Duration::from_secs(60));
                if let Some(w) = state.args.names.writer() {
                    w.get_cell().drain_and_wait(grace).await?;
                }
                for kind in ProjectionKind::ALL {
                    if let Some(p) = state.args.names.projector(kind) {
                        p.get_cell().drain_and_wait(grace).await?;
                    }
                }
                if let Some(p) = state.args.names.publisher() {
                    p.get_cell().drain_and_wait(grace).await?;
                }
                // Followers hold nothing that is not in the store: what they
                // have not folded, the next leaseholder folds.
                for f in state.folders.drain(..) {
                    f.stop(None);
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(child) = forget(state, &cell) {
                    on_failure(&myself, state, child, &error.to_string())?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(child) = forget(state, &cell) {
                    if !state.draining {
                        // Nothing of ours stops on its own: treat it as a failure.
                        let reason = reason.unwrap_or_else(|| "stopped".into());
                        on_failure(&myself, state, child, &reason)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn forget(state: &mut SupervisorState, cell: &ActorCell) -> Option<Child> {
    let child = state.children.remove(&cell.get_id())?;
    match child {
        Child::Consumer(p) => {
            state.consumers.remove(&p);
            // Its aggregates go with it; their deliveries come back from the log.
            cell.stop_children(None);
        }
        Child::Writer | Child::Projector(_) | Child::Publisher | Child::Folder(_) => {}
    }
    Some(child)
}

fn on_failure(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    child: Child,
    error: &str,
) -> Result<(), ActorProcessingErr> {
    if state.draining {
        // Shutting down: nothing is restarted, and what the child held
        // comes back from the log or the journal at the next start.
        ev::actor_failed_draining(child.kind(), error);
        return Ok(());
    }
    let now = Instant::now();
    let window = state.args.config.restart_window;
    state.failures.push_back(now);
    while state
        .failures
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        state.failures.pop_front();
    }
    if state.failures.len() as u32 > state.args.config.max_restarts {
        tracing::error!(actor = child.kind(), error, "too many failures; escalating");
        return Err(format!(
            "{} failures within {:?} (last: {} {error}); giving up",
            state.failures.len(),
            window,
            child.kind()
        )
        .into());
    }
    ev::actor_restarted(child.kind(), error);
    let attempt = state.attempts.entry(child).or_insert(0);
    *attempt += 1;
    let delay = state.args.config.backoff(*attempt);
    myself.send_after(delay, move || SupervisorMsg::Restart(child));
    Ok(())
}

async fn spawn_child(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    child: Child,
) -> Result<(), ActorProcessingErr> {
    let a = &state.args;
    let cell = match child {
        Child::Writer => {
            let args = WriterArgs {
                subscribers: a.subscribers.clone(),
                store: a.store.clone(),
                health: a.health.clone(),
                max_batch: a.config.max_write_batch,
                commit_interval: match a.store.projection_mode() {
                    ProjectionMode::Checkpointed => writer::COMMIT_INTERVAL,
                    ProjectionMode::Folded => Duration::ZERO,
                },
                intake: a.names.writer_intake().clone(),
            };
            let (w, _) = Actor::spawn_linked(
                Some(a.names.writer_name()),
                JournalWriter,
                args,
                myself.get_cell(),
            )
            .await?;
            w.get_cell()
        }
        Child::Projector(kind) => {
            let args = ProjectorArgs {
                kind,
                store: a.store.clone(),
                subscribers: a.subscribers.clone(),
            };
            let (p, _) = Actor::spawn_linked(
                Some(a.names.projector_name(kind)),
                Projector,
                args,
                myself.get_cell(),
            )
            .await?;
            p.get_cell()
        }
        Child::Publisher => {
            let Some(sink) = a.sink.clone() else {
                return Err("no events sink for the publisher".into());
            };
            let args = PublisherArgs {
                store: a.store.clone(),
                sink,
                subscribers: a.subscribers.clone(),
            };
            let (p, _) = Actor::spawn_linked(
                Some(a.names.publisher_name()),
                EventPublisher,
                args,
                myself.get_cell(),
            )
            .await?;
            p.get_cell()
        }
        Child::Consumer(partition) => {
            let partitions = a.log.partitions().max(1) as usize;
            let aggregate_cap = (a.config.max_live_aggregates / partitions).max(2);
            // Each busy aggregate holds at least one unacknowledged delivery;
            // with fewer deliveries in flight than the cap there is always an
            // idle aggregate to passivate, so the cap holds strictly.
            let mut config = a.config.clone();
            config.max_in_flight = config.max_in_flight.min(aggregate_cap - 1).max(1);
            let args = ConsumerArgs {
                partition,
                log: a.log.clone(),
                store: a.store.clone(),
                names: a.names.clone(),
                health: a.health.clone(),
                config,
                aggregate_cap,
                sink: a.sink.clone(),
            };
            let (c, _) =
                Actor::spawn_linked(None, PartitionConsumer, args, myself.get_cell()).await?;
            state.consumers.insert(partition, c.clone());
            c.get_cell()
        }
        Child::Folder(partition) => {
            let args = FolderArgs {
                partition,
                log: a.log.clone(),
                store: a.store.clone(),
                sink: a.sink.clone(),
                owner: state.owner.clone(),
                interval: a.config.fold_interval,
            };
            let (f, _) = Actor::spawn_linked(None, Folder, args, myself.get_cell()).await?;
            state.folders.push(f.clone());
            f.get_cell()
        }
    };
    state.children.insert(cell.get_id(), child);
    Ok(())
}
