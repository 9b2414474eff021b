//! The actor tree (see `actors.md` for the map):
//!
//! ```text
//! RootSupervisor
//! ├── JournalWriter          group commit of events and rejections
//! ├── Projector × 3          daily stats, status, user stats
//! ├── EventPublisher         events topic (Pulsar mode only)
//! └── PartitionConsumer × N  one per partition of the command log
//!     └── UserAggregate × *  one per live user, spawned on demand, passivated
//! ```

pub mod aggregate;
pub mod consumer;
pub mod folder;
pub mod follow;
pub mod handoff;
pub mod projector;
#[cfg(test)]
mod props;
pub mod publisher;
pub mod subscribers;
pub mod supervisor;
pub mod writer;

use std::sync::atomic::Ordering;

use std::time::Duration;

/// Schedules one `flush` message to the actor itself, unless one is
/// already queued (`scheduled`). Returns `false` when the mailbox is
/// closed: the actor is being drained at shutdown (`drain_and_wait`), so
/// nothing arrives after what is queued and the caller must flush now
/// instead of failing (a failed handler would drop what it buffered).
pub(crate) fn schedule_flush<M: ractor::Message>(
    myself: &ractor::ActorRef<M>,
    scheduled: &mut bool,
    flush: M,
) -> bool {
    if *scheduled {
        return true;
    }
    *scheduled = myself.send_message(flush).is_ok();
    *scheduled
}

/// [`schedule_flush`], paced: the flush arrives no sooner than `interval`
/// after the previous one started (`last`), by `send_after` if that is
/// still ahead. Such a message cannot arrive once the actor stops, so an
/// actor that paces its flushes flushes what it still holds in
/// `post_stop`.
pub(crate) fn schedule_paced_flush<M: ractor::Message>(
    myself: &ractor::ActorRef<M>,
    scheduled: &mut bool,
    (last, interval): (Option<tokio::time::Instant>, Duration),
    flush: fn() -> M,
) -> bool {
    if *scheduled {
        return true;
    }
    let wait = last.map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
    if wait.is_zero() {
        return schedule_flush(myself, scheduled, flush());
    }
    myself.send_after(wait, flush);
    *scheduled = true;
    true
}

/// Tunables of the pipeline (from the command line).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Deliveries a partition consumer holds unacknowledged at most
    /// (flow control: the reader waits when the window is full).
    pub max_in_flight: usize,
    /// Live aggregates per process (divided among partitions).
    pub max_live_aggregates: usize,
    /// An aggregate idle this long is passivated.
    pub aggregate_idle: Duration,
    /// Deliveries of a command whose processing keeps failing (its
    /// aggregate panics) before it is dead-lettered.
    pub max_deliveries: u32,
    /// First back-off after a transient failure; doubles up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long answering a `BuildInteractionsInfo` (query and publish)
    /// may take before it is retried. Group commits have no such limit:
    /// their callers wait behind the backlog, which `max_in_flight`
    /// bounds (see actors.md, "Group commit").
    pub answer_timeout: Duration,
    /// Most events in one group commit.
    pub max_write_batch: usize,
    /// How often consumers commit acknowledged offsets.
    pub commit_interval: Duration,
    /// Restarts of a supervised actor tolerated within `restart_window`
    /// before the supervisor escalates (the process exits non-zero).
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// How often a store's followers fold what the log acknowledged
    /// (ScyllaDB store): the staleness of its statistics and indexes.
    pub fold_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 4096,
            max_live_aggregates: 5_000,
            aggregate_idle: Duration::from_secs(60),
            max_deliveries: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(10),
            max_write_batch: 8192,
            commit_interval: Duration::from_millis(200),
            fold_interval: Duration::from_secs(1),
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
        }
    }
}

impl PipelineConfig {
    /// The back-off before the `attempt`-th retry (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.retry_base * factor).min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = PipelineConfig::default();
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(2), Duration::from_millis(200));
        assert_eq!(c.backoff(30), Duration::from_secs(5));
    }
}

/// Names of the singleton actors of one service instance in ractor's
/// registry. Prefixed per instance so several services can live in one
/// process (the tests do that); looked up on use so a restarted writer or
/// projector is found under the same name.
///
/// It also holds the journal writer's [`writer::Intake`], which outlives
/// any one writer (each opens it when it starts).
#[derive(Clone)]
pub struct Names {
    prefix: String,
    intake: std::sync::Arc<writer::Intake>,
}

impl Names {
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            prefix: format!("svc{}", NEXT.fetch_add(1, Ordering::SeqCst)),
            intake: Default::default(),
        }
    }

    pub fn writer_name(&self) -> String {
        format!("{}/journal-writer", self.prefix)
    }

    pub fn projector_name(&self, kind: crate::store::ProjectionKind) -> String {
        format!("{}/projector/{}", self.prefix, kind.as_str())
    }

    pub fn publisher_name(&self) -> String {
        format!("{}/event-publisher", self.prefix)
    }

    pub fn publisher(&self) -> Option<ractor::ActorRef<publisher::PublisherMsg>> {
        ractor::ActorRef::where_is(self.publisher_name())
    }

    pub fn writer(&self) -> Option<ractor::ActorRef<writer::WriterMsg>> {
        ractor::ActorRef::where_is(self.writer_name())
    }

    /// Where aggregates hand their batches to the writer.
    pub fn writer_intake(&self) -> &std::sync::Arc<writer::Intake> {
        &self.intake
    }

    pub fn projector(
        &self,
        kind: crate::store::ProjectionKind,
    ) -> Option<ractor::ActorRef<projector::ProjectorMsg>> {
        ractor::ActorRef::where_is(self.projector_name(kind))
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}
