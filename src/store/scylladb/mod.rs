//! The ScyllaDB store: the journal, its indexes and the projections in CQL,
//! shared by every worker of the fleet (ScyllaDB or Apache Cassandra 5: only
//! portable CQL on this path), with no consensus round per event.
//!
//! - **Decide** ([`view`]): a worker reads the user's head (one row: last
//!   seq, statistics, latest ids and daily keys; reads of many users go
//!   out together) fresh for every batch, and decides with the pure
//!   [`crate::domain::decide::decide`].
//! - **Commit** ([`write`]): the journal rows in command-log order
//!   (`log`, single-partition batches), then each user's rows (id rows,
//!   key rows, the head last; multi-partition batches), all idempotent and
//!   ordered by sequence numbers. Then the commands are acknowledged.
//! - **Fold** ([`fold`], [`crate::store::Folding`]): per partition of the
//!   command log, a follower reads the journal up to what the log has
//!   acknowledged and writes the indexes and per-partition statistics
//!   behind it, with its checkpoint in the same single-partition batch.
//!
//! Why a crash, a rebalance or a paused worker loses and doubles nothing:
//! actors.md, "Exactly once without consensus".

mod connect;
pub mod fold;
pub mod head;
mod read;
pub mod schema;
mod statements;
#[cfg(test)]
mod tests;
mod view;
mod write;

use super::{
    DailyStat, EventStore, Folding, JournalGuard, JournalRecord, ProjectionKind, ProjectionMode,
    StatsQuery, StatusStat, StoreError, StoredEvent, UserStats, WriteBatch, WriteOutcome,
};
use crate::domain::decide::{DailyKey, UserView};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
pub use connect::{parse_consistency, session, ConnectError, ScyllaConfig};
use scylla::client::session::Session;
use statements::Statements;
use std::sync::Arc;
use std::time::Duration;

/// Concurrent statements per write or read fan-out.
const CONCURRENCY: usize = 64;
/// Most events per group commit: a commit is a few rounds of batches, so
/// its time grows with its size, and its callers wait for all of it.
const COMMIT_EVENTS: usize = 1024;

pub struct ScyllaStore {
    session: Arc<Session>,
    st: Arc<Statements>,
    /// Batched reads of users' heads ([`view`]).
    heads: view::HeadReader,
    /// The head each user had when this process last read or wrote it,
    /// so a commit right after its view need not read it again.
    known_heads: view::KnownHeads,
    /// Log blocks this process has listed (listing one again is harmless).
    blocks: std::sync::Mutex<std::collections::HashSet<(i32, i64, i64)>>,
    /// Recent statistics answers, by query (see `ScyllaConfig::stats_cache_ttl`).
    stats_cache: read::StatsCache,
    /// The followers' running statistics, per partition (see `fold`).
    folds: fold::Folds,
    /// Test hook: fail every commit right after its journal rows (a crash
    /// between the journal and the users' rows).
    #[cfg(test)]
    pub(crate) crash_after_log: std::sync::atomic::AtomicBool,
}

impl ScyllaStore {
    /// Connects, checks that the keyspace holds the schema this build
    /// knows (`tracking schema apply` creates it) and prepares statements.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<Self, ConnectError> {
        let session = Arc::new(session(cfg).await?);
        schema::check(&session, &cfg.keyspace).await?;
        let st = Arc::new(Statements::prepare(&session, &cfg.keyspace).await?);
        Ok(ScyllaStore {
            heads: view::HeadReader::start(session.clone(), st.clone()),
            known_heads: Default::default(),
            session,
            st,
            blocks: Default::default(),
            stats_cache: read::StatsCache::new(cfg.stats_cache_ttl),
            folds: Default::default(),
            #[cfg(test)]
            crash_after_log: Default::default(),
        })
    }

    /// Remembers rows of a small listing this process has written
    /// (bounded: forgetting only costs a repeated, idempotent write).
    fn first_time<T: std::hash::Hash + Eq>(
        set: &std::sync::Mutex<std::collections::HashSet<T>>,
        item: T,
    ) -> bool {
        match set.lock() {
            Ok(mut w) => {
                if w.len() > 100_000 {
                    w.clear();
                }
                w.insert(item)
            }
            Err(_) => true,
        }
    }
}

// ---- conversions shared by the read and write paths ----------------------

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

pub(crate) fn day_num(d: NaiveDate) -> i32 {
    (d - epoch()).num_days() as i32
}

pub(crate) fn num_day(n: i32) -> NaiveDate {
    epoch() + chrono::Duration::days(n as i64)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The nanoseconds below the microsecond (0..=999), stored beside
/// [`micros`] where the exact instant is served back.
pub(crate) fn sub_micros(t: DateTime<Utc>) -> i32 {
    (t.timestamp_subsec_nanos() % 1000) as i32
}

pub(crate) fn from_micros(m: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(m)
        .ok_or_else(|| StoreError::Corrupt(format!("bad instant {m}")))
}

/// The exact instant of a `(micros, nanos below the microsecond)` pair.
pub(crate) fn from_parts(m: i64, ns: Option<i32>) -> Result<DateTime<Utc>, StoreError> {
    let ns = ns.unwrap_or(0).clamp(0, 999) as i64;
    Ok(from_micros(m)? + chrono::Duration::nanoseconds(ns))
}

/// Maps driver errors: timeouts and unreachable nodes are retryable.
pub(crate) fn exec_err(e: scylla::errors::ExecutionError) -> StoreError {
    use scylla::errors::ExecutionError as E;
    match e {
        E::RequestTimeout(d) => StoreError::Timeout(format!("no answer within {d:?}")),
        E::LastAttemptError(a) => {
            let text = a.to_string();
            if text.to_ascii_lowercase().contains("timeout")
                || text.to_ascii_lowercase().contains("timed out")
            {
                StoreError::Timeout(text)
            } else {
                StoreError::Unavailable(text)
            }
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Runs futures with bounded concurrency, results in order; the first
/// error wins. (Boxed futures: they keep async-trait's lifetimes simple.)
pub(crate) async fn bounded<T>(
    futs: Vec<futures::future::BoxFuture<'_, Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(futs)
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Maps paging errors (a node or the connection went away: retryable).
pub(crate) fn pager_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps result-decoding errors (the schema does not match: not retryable).
pub(crate) fn rows_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("unexpected result: {e}"))
}

/// Milliseconds added to recording times in positions (positions are
/// unsigned; this reaches back to 1779 and forward to 2262).
const POS_EPOCH_MS: i64 = 6_000_000_000_000;

/// An event's position in the recent list and the target listing: its
/// recording time in milliseconds (from [`POS_EPOCH_MS`]) times 10^6, plus its command's entry,
/// batch index and partition, two decimal digits each (`EEIIPP`).
/// Deterministic (the same command, the same position, whoever writes
/// it), in recording order, and in log order within a partition and a
/// millisecond; two commands recorded in the same millisecond can share
/// one only if their entries are 100 apart in one partition, or their
/// partitions 100 apart (their rows are kept apart by user and seq; a
/// page boundary between the two may skip one).
pub(crate) fn event_pos(recorded_at: DateTime<Utc>, partition: u32, minor: u64) -> u64 {
    let ms = (recorded_at.timestamp_millis() + POS_EPOCH_MS).max(0) as u64;
    let entry = minor >> crate::domain::position::BATCH_BITS;
    let index = minor & ((1 << crate::domain::position::BATCH_BITS) - 1);
    let low = (entry % 100) * 10_000 + (index % 100) * 100 + u64::from(partition % 100);
    ms.saturating_mul(1_000_000) + low
}

pub(crate) fn stored(pos: i64, blob: &[u8]) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent::new(
        pos.max(0) as u64,
        crate::domain::InteractionTracked::decode(blob)?,
    ))
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Unsupported(format!(
        "{what}: the ScyllaDB store folds its projections behind the journal (no store-wide positions)"
    ))
}

#[async_trait]
impl EventStore for ScyllaStore {
    fn kind(&self) -> &'static str {
        "scylla"
    }

    fn projection_mode(&self) -> ProjectionMode {
        ProjectionMode::Folded
    }

    fn journal_guard(&self) -> JournalGuard {
        JournalGuard::Deterministic
    }

    fn max_commit_events(&self) -> usize {
        COMMIT_EVENTS
    }

    async fn view(
        &self,
        user: &str,
        ids: &[String],
        keys: &[DailyKey],
    ) -> Result<UserView, StoreError> {
        view::view(self, user, ids, keys).await
    }

    fn folding(&self) -> Option<&dyn Folding> {
        Some(self)
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        write::write(self, &batch).await
    }

    async fn last_seq(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(view::head(self, user_id).await?.map_or(0, |(seq, _)| seq))
    }

    async fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        read::interaction(self, id).await
    }

    async fn user_events(
        &self,
        user_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::user_events(self, user_id, after_seq, limit).await
    }

    async fn recent(
        &self,
        before_pos: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::recent(self, before_pos, limit).await
    }

    async fn by_target(
        &self,
        target_id: &str,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::by_target(self, target_id, from, to, limit).await
    }

    async fn scan(&self, _after: u64, _limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        Err(unsupported("scan by position"))
    }

    async fn visit_journal(
        &self,
        visit: &mut (dyn FnMut(JournalRecord) + Send),
    ) -> Result<u64, StoreError> {
        read::visit_journal(self, visit).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Err(unsupported("journal head"))
    }

    async fn checkpoint(&self, _p: ProjectionKind) -> Result<u64, StoreError> {
        Err(unsupported("projection checkpoints"))
    }

    async fn apply(&self, _p: ProjectionKind, _r: &[JournalRecord]) -> Result<u64, StoreError> {
        Err(unsupported("applying records"))
    }

    async fn reset(&self, _p: ProjectionKind) -> Result<(), StoreError> {
        Err(unsupported("resetting a projection"))
    }

    async fn daily_stats(&self, q: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
        let key = format!("daily {q:?}");
        if let Some(read::Cached::Daily(hit)) = self.stats_cache.get(&key) {
            return Ok(hit);
        }
        let fresh = read::daily_stats(self, q).await?;
        self.stats_cache
            .put(key, read::Cached::Daily(fresh.clone()));
        Ok(fresh)
    }

    async fn status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatusStat>, StoreError> {
        let key = format!("status {from} {to}");
        if let Some(read::Cached::Status(hit)) = self.stats_cache.get(&key) {
            return Ok(hit);
        }
        let fresh = read::status_stats(self, from, to).await?;
        self.stats_cache
            .put(key, read::Cached::Status(fresh.clone()));
        Ok(fresh)
    }

    async fn user_stats(&self, user_id: &str) -> Result<Option<UserStats>, StoreError> {
        Ok(view::head(self, user_id)
            .await?
            .and_then(|(_, h)| h.stats.clone()))
    }

    async fn all_user_stats(&self) -> Result<Vec<UserStats>, StoreError> {
        read::all_user_stats(self).await
    }

    async fn cursor(&self, _name: &str) -> Result<u64, StoreError> {
        Err(unsupported("journal cursors"))
    }

    async fn set_cursor(&self, _name: &str, _pos: u64) -> Result<(), StoreError> {
        Err(unsupported("journal cursors"))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(()) // every write was acknowledged at the configured consistency
    }
}

#[async_trait]
impl Folding for ScyllaStore {
    async fn partitions(&self) -> Result<Vec<u32>, StoreError> {
        fold::partitions(self).await
    }

    async fn refold(&self, partition: u32) -> Result<(), StoreError> {
        fold::refold(self, partition).await
    }

    async fn checkpoint(&self, partition: u32) -> Result<crate::store::FoldCheckpoint, StoreError> {
        fold::checkpoint(self, partition).await.map(|(cp, _)| cp)
    }

    async fn read(
        &self,
        partition: u32,
        after: Option<crate::domain::position::Position>,
        through: crate::domain::position::Position,
        limit: usize,
    ) -> Result<Vec<crate::store::LogRecord>, StoreError> {
        fold::read(self, partition, after, through, limit).await
    }

    async fn fold(
        &self,
        partition: u32,
        from: crate::store::FoldCheckpoint,
        records: &[crate::store::LogRecord],
    ) -> Result<crate::store::FoldCheckpoint, StoreError> {
        fold::fold(self, partition, from, records).await
    }

    async fn lease(&self, partition: u32, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        fold::lease(self, partition, owner, ttl).await
    }
}
