//! The event store: the journal of `InteractionTracked` events (and of
//! rejected commands), its indexes, and the projection tables.
//!
//! [`EventStore`] is the one trait the actors talk to; the embedded
//! implementation ([`embedded`], an LSM on local disk) and the ScyllaDB one
//! keep the same contract, checked by one shared suite ([`contract`]).
//!
//! Contract:
//! - [`EventStore::write`] is one durable commit (group commit): when it
//!   returns `Ok`, every appended group and rejection in it survives a crash.
//! - A group is appended only if none of its interaction ids is already
//!   stored and, unless the store numbers it ([`Numbering::Store`]), the
//!   user's last stored sequence number is `expected_last_seq` (otherwise
//!   the group gets a [`GroupOutcome::Conflict`] and nothing of it is
//!   written): per user the journal is gap-free, and an interaction id is
//!   at most one event.
//! - Every appended event and rejection gets a store-wide position, strictly
//!   increasing in commit order; projections are applied in that order and
//!   remember the last position they applied (their checkpoint) atomically
//!   with the change, so applying a record twice has no effect.

pub mod contract;
pub mod embedded;
pub mod projections;
pub mod scylladb;

use crate::domain::decide::{DailyKey, UserView};
use crate::domain::position::Source;
use crate::domain::{InteractionTracked, InteractionType, Rejection};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Errors of a store. `Unavailable` and `Timeout` are retryable (the
/// consumer backs off and tries again, never dead-letters for them);
/// `Corrupt` and `Codec` are not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store timed out: {0}")]
    Timeout(String),
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Codec(#[from] crate::domain::event::EventCodecError),
    /// The operation does not exist in this store (e.g. checkpoints in a
    /// store that keeps projections inline). A programming error.
    #[error("not supported by this store: {0}")]
    Unsupported(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

/// An event with its store-wide position. The event is shared: the
/// writer hands the same committed records to every projector and the
/// publisher, and each of them keeps its own copy of the records it
/// applies (a clone of a record is a reference count, not the event's
/// strings).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub pos: u64,
    pub event: Arc<InteractionTracked>,
}

impl StoredEvent {
    pub fn new(pos: u64, event: InteractionTracked) -> Self {
        Self {
            pos,
            event: Arc::new(event),
        }
    }

    /// The event itself: no copy when this record holds the only
    /// reference (a read's result), a clone when it is shared.
    pub fn into_event(self) -> InteractionTracked {
        Arc::unwrap_or_clone(self.event)
    }
}

/// A rejected command with its store-wide position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRejection {
    pub pos: u64,
    pub rejection: Rejection,
}

/// One record of the journal, in position order.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRecord {
    Event(StoredEvent),
    Rejection(StoredRejection),
}

impl JournalRecord {
    pub fn pos(&self) -> u64 {
        match self {
            Self::Event(e) => e.pos,
            Self::Rejection(r) => r.pos,
        }
    }
}

/// Events of one user to append, numbered as [`Numbering`] says: after
/// `expected_last_seq` (their `seq` must be `expected_last_seq + 1, + 2,
/// ...`), or after whatever the user's last seq is when the store writes
/// them (their `seq` must be `1, 2, ...`; `expected_last_seq` is ignored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppendGroup {
    pub user_id: String,
    pub expected_last_seq: u64,
    pub numbering: Numbering,
    pub events: Vec<InteractionTracked>,
    /// Per event (same order), where its command is in the command log and
    /// what it adds to the statistics; empty when the caller has none (a
    /// [`JournalGuard::Deterministic`] store needs them).
    pub meta: Vec<EventMeta>,
}

/// Who gives a group's events their sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numbering {
    /// The caller, after `expected_last_seq`: a
    /// [`JournalGuard::Conditional`] store refuses the group
    /// ([`AppendConflict::SeqMismatch`]) unless that is still the user's
    /// last seq; a [`JournalGuard::Deterministic`] one writes it as given.
    #[default]
    Expected,
    /// The store, under its writer lock: the events follow the user's last
    /// seq at the moment they are written (gap-free, never a
    /// `SeqMismatch`; a taken id is still refused). The caller needs no
    /// view of the user's seq at all. Only a [`JournalGuard::Conditional`]
    /// store accepts it (a deterministic one needs every writer to write
    /// the same rows, so the caller must decide the numbers).
    Store,
}

/// What the decision knew about an event besides the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    /// The command's record in the command log.
    pub source: Source,
    /// The user's first event on its daily key (one unique user).
    pub first_of_key: bool,
}

/// How a store keeps a user's journal gap-free against concurrent writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalGuard {
    /// A group is appended only if its ids are free and, numbered by the
    /// caller, the user's last seq is the expected one (else a
    /// [`GroupOutcome::Conflict`]); it may be numbered by the store
    /// ([`Numbering::Store`]). The checks and the numbering run under one
    /// writer lock: no other writer can interleave.
    Conditional,
    /// Groups are written as given, idempotently: every writer of a user
    /// decides from a fresh [`EventStore::view`] with a pure function of it
    /// and of the commands, so two writers of the same commands write the
    /// same rows. Callers must not cache a view across batches.
    Deterministic,
}

/// One commit's worth of writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub groups: Vec<AppendGroup>,
    pub rejections: Vec<Rejection>,
    /// Where each rejected command is in the command log (same order as
    /// `rejections`; empty when the caller has none).
    pub rejection_sources: Vec<Source>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.rejections.is_empty()
    }
}

/// Why a group was not appended. Not an error of the store: the aggregate
/// reloads its state and decides again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendConflict {
    /// Someone else appended for this user (or the aggregate's state is stale).
    SeqMismatch { expected: u64, actual: u64 },
    /// An interaction id of the group is already stored (for `owner`).
    InteractionIdTaken {
        interaction_id: String,
        owner: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Appended; the events got positions `first_pos..first_pos+len` and
    /// seqs `first_seq..first_seq+len` (the seqs they carried, unless the
    /// store numbered them: [`Numbering::Store`]).
    Appended {
        first_pos: u64,
        first_seq: u64,
    },
    Conflict(AppendConflict),
}

/// Result of [`EventStore::write`], in the order of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    pub groups: Vec<GroupOutcome>,
    /// `Some(pos)` if recorded now, `None` if this command id was already
    /// rejected before (idempotent).
    pub rejections: Vec<Option<u64>>,
}

/// The projections the store maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionKind {
    /// Per UTC day (of `occurred_at`), interaction type and campaign: count
    /// and unique users.
    DailyStats,
    /// Per UTC day (of recording): commands that ended `ok` and `error`.
    Status,
    /// Per user: totals by type, first and last interaction.
    UserStats,
}

impl ProjectionKind {
    pub const ALL: [ProjectionKind; 3] = [Self::DailyStats, Self::Status, Self::UserStats];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DailyStats => "daily_stats",
            Self::Status => "status",
            Self::UserStats => "user_stats",
        }
    }
}

/// A row of the daily statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct DailyStat {
    pub day: NaiveDate,
    pub interaction_type: InteractionType,
    /// `None` for commands without a campaign (the original hand-test format).
    pub campaign_id: Option<String>,
    pub count: u64,
    pub unique_users: u64,
}

/// A row of the status projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct StatusStat {
    pub day: NaiveDate,
    pub accepted: u64,
    pub rejected: u64,
}

/// The per-user statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStats {
    pub user_id: String,
    pub total: u64,
    pub clicks: u64,
    pub views: u64,
    pub likes: u64,
    pub last_seq: u64,
    pub first_occurred_at: chrono::DateTime<chrono::Utc>,
    pub last_occurred_at: chrono::DateTime<chrono::Utc>,
}

/// Filter of [`EventStore::daily_stats`] (days inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub campaign_id: Option<String>,
    pub interaction_type: Option<InteractionType>,
}

/// How a store keeps its projections up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionMode {
    /// Projector actors follow the journal by position and apply records
    /// with [`EventStore::apply`] (one writer process: the embedded store).
    Checkpointed,
    /// Folded behind the journal, per partition of the command log, from
    /// the records the log has acknowledged, by the store's own followers
    /// ([`EventStore::folding`]; many writers: the ScyllaDB store).
    /// `scan`, `head`, `checkpoint`, `apply`, `reset` and the cursors are
    /// [`StoreError::Unsupported`].
    Folded,
}

/// The store the actors and the read API use.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// A short name for logs and metrics (`embedded`, `scylla`).
    fn kind(&self) -> &'static str;

    fn projection_mode(&self) -> ProjectionMode {
        ProjectionMode::Checkpointed
    }

    fn journal_guard(&self) -> JournalGuard {
        JournalGuard::Conditional
    }

    /// What the store knows of `user` for a batch holding these ids and
    /// daily keys. The default: the last seq and, per id, whether this user
    /// or another holds it ([`EventStore::interaction_owners`]); no keys.
    async fn view(
        &self,
        user: &str,
        ids: &[String],
        _keys: &[DailyKey],
    ) -> Result<UserView, StoreError> {
        let (last_seq, owners) =
            futures::try_join!(self.last_seq(user), self.interaction_owners(ids))?;
        let mut view = UserView {
            last_seq,
            ..Default::default()
        };
        for (id, owner) in ids.iter().zip(owners) {
            match owner {
                Some(o) if o == user => view.own_ids.insert(id.clone()),
                Some(_) => view.foreign_ids.insert(id.clone()),
                None => false,
            };
        }
        Ok(view)
    }

    /// The followers' side of a [`ProjectionMode::Folded`] store.
    fn folding(&self) -> Option<&dyn Folding> {
        None
    }

    /// Most events one group commit should hold; the writer takes the
    /// smaller of this and `--max-write-batch`. A store whose commit time
    /// grows with the commit's size keeps commits short: their callers
    /// wait for the whole commit, and one failed request fails all of it.
    fn max_commit_events(&self) -> usize {
        usize::MAX
    }

    /// Appends groups and records rejections in one durable commit.
    async fn write(&self, batch: std::sync::Arc<WriteBatch>) -> Result<WriteOutcome, StoreError>;

    /// The user's last sequence number (0 if the user has no event).
    async fn last_seq(&self, user_id: &str) -> Result<u64, StoreError>;

    /// The event with this interaction id.
    async fn interaction(&self, interaction_id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// For each interaction id, the user whose event holds it (if any).
    /// One round trip for a batch; the default asks one id at a time.
    async fn interaction_owners(&self, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.interaction(id).await?.map(|e| e.into_event().user_id));
        }
        Ok(out)
    }

    /// The user's events with `seq > after_seq`, in sequence order.
    async fn user_events(
        &self,
        user_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest events first, starting below `before_pos` (all if `None`).
    async fn recent(
        &self,
        before_pos: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events on a target element whose `occurred_at` day is in `from..=to`,
    /// in (day, position) order.
    async fn by_target(
        &self,
        target_id: &str,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Journal records with `pos > after_pos`, in position order.
    async fn scan(&self, after_pos: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError>;

    /// Visits every journal record (any order across users; per user in
    /// seq order only within a store's partition). Returns how many.
    async fn visit_journal(
        &self,
        visit: &mut (dyn FnMut(JournalRecord) + Send),
    ) -> Result<u64, StoreError> {
        let (mut after, mut n) = (0, 0);
        loop {
            let records = self.scan(after, 8192).await?;
            let Some(last) = records.last() else {
                return Ok(n);
            };
            after = last.pos();
            n += records.len() as u64;
            records.into_iter().for_each(&mut *visit);
        }
    }

    /// The position of the last record committed (0 if none).
    async fn head(&self) -> Result<u64, StoreError>;

    /// Why the store cannot be used again until the process restarts
    /// (`None`: it can). Liveness fails then, so that an orchestrator
    /// restarts the process and the store recovers at open.
    fn needs_restart(&self) -> Option<String> {
        None
    }

    /// The journal's durable head, read without waiting, for stores whose
    /// positions are their own (the embedded store); `None` otherwise. It
    /// never moves back unless the store lost data.
    fn durable_head(&self) -> Option<u64> {
        None
    }

    /// Makes every record written so far durable and returns
    /// [`Self::durable_head`] after it. Blocking (an `fdatasync` at most):
    /// called off the runtime, by a command log before it commits consumed
    /// offsets (see [`Self::defer_syncs`]). Stores whose commits are
    /// durable when they return have nothing to do.
    fn make_durable(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.durable_head())
    }

    /// From now on, a commit may return before its records are durable:
    /// they become durable at [`Self::make_durable`], before any state
    /// derived from them is, and at shutdown. The wiring calls it only when
    /// the command log makes every acknowledgement final through
    /// `make_durable` first (the embedded log's offsets commit), so that
    /// nothing acknowledged depends on a record not yet durable. Stores
    /// without such a choice ignore it.
    fn defer_syncs(&self) {}

    /// The last position applied to a projection.
    async fn checkpoint(&self, projection: ProjectionKind) -> Result<u64, StoreError>;

    /// Applies records (ascending positions) to a projection, skipping those
    /// at or below its checkpoint, and moves the checkpoint, atomically.
    /// Returns the new checkpoint.
    async fn apply(
        &self,
        projection: ProjectionKind,
        records: &[JournalRecord],
    ) -> Result<u64, StoreError>;

    /// Empties a projection and sets its checkpoint to 0 (for rebuilds).
    async fn reset(&self, projection: ProjectionKind) -> Result<(), StoreError>;

    async fn daily_stats(&self, query: &StatsQuery) -> Result<Vec<DailyStat>, StoreError>;

    async fn status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatusStat>, StoreError>;

    async fn user_stats(&self, user_id: &str) -> Result<Option<UserStats>, StoreError>;

    /// Every user that has stats (for verification), in any order.
    async fn all_user_stats(&self) -> Result<Vec<UserStats>, StoreError>;

    /// A named cursor over journal positions (e.g. how far the outbound
    /// events stream has been published); 0 if never set.
    async fn cursor(&self, name: &str) -> Result<u64, StoreError>;

    /// Moves a named cursor (durably enough: a lost move only repeats work).
    async fn set_cursor(&self, name: &str, pos: u64) -> Result<(), StoreError>;

    /// Makes everything written so far durable (at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// What the store holds in this process's memory, if it keeps any
    /// (for the metrics; the ScyllaDB store keeps none worth reporting).
    fn memory(&self) -> Option<StoreMemory> {
        None
    }
}

/// Where a follower of one command-log partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FoldCheckpoint {
    /// The last record folded (`None`: nothing yet).
    pub position: Option<crate::domain::position::Position>,
    /// How many records were folded: the order of the follower's writes.
    pub folded: u64,
}

/// A record of the journal as a follower of a command-log partition reads
/// it: where its command is in the log, and what it adds to the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub position: crate::domain::position::Position,
    pub record: JournalRecord,
    /// An event that is its user's first on its daily key.
    pub first_of_key: bool,
    /// The event as the store keeps it (rmp-serde), when the store has it
    /// at hand: indexes that copy the event need not encode it again.
    pub encoded: Option<std::sync::Arc<[u8]>>,
}

/// The followers of a [`ProjectionMode::Folded`] store: per partition of
/// the command log, its records are folded in log order into the indexes
/// and statistics, up to what the log has acknowledged (so only records
/// whose effects are final). Folding is idempotent and each write is
/// ordered by [`FoldCheckpoint::folded`], so two followers of a partition
/// (a slow one and its successor) converge on the same rows.
#[async_trait]
pub trait Folding: Send + Sync {
    /// The partitions of the command log that have journal records.
    async fn partitions(&self) -> Result<Vec<u32>, StoreError>;

    async fn checkpoint(&self, partition: u32) -> Result<FoldCheckpoint, StoreError>;

    /// Forgets a partition's statistics and checkpoint, so that its
    /// followers fold it again from the start (`tracking rebuild`); a
    /// follower of the earlier fold loses to the new one.
    async fn refold(&self, partition: u32) -> Result<(), StoreError>;

    /// The partition's records after `after` up to `through`, in log
    /// order, at most `limit`.
    async fn read(
        &self,
        partition: u32,
        after: Option<crate::domain::position::Position>,
        through: crate::domain::position::Position,
        limit: usize,
    ) -> Result<Vec<LogRecord>, StoreError>;

    /// Writes what `records` (read after `from`) add to the indexes and
    /// statistics, then the checkpoint after them.
    async fn fold(
        &self,
        partition: u32,
        from: FoldCheckpoint,
        records: &[LogRecord],
    ) -> Result<FoldCheckpoint, StoreError>;

    /// Takes or renews the lease of a partition's follower for `owner`;
    /// `false` while another owner holds it. Only saves work: followers
    /// are safe together.
    async fn lease(
        &self,
        partition: u32,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
}

/// The memory an embedded store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Memtables, active and sealed (not yet flushed), by payload size,
    /// and other writes held in memory until they are flushed.
    pub write_buffer_bytes: u64,
    /// The block cache's current size.
    pub cache_bytes: u64,
    /// Sealed memtables waiting for a flush.
    pub pending_flushes: u64,
}
