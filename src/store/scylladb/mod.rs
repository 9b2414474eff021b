//! The ScyllaDB store: the journal, its indexes and the projections in CQL,
//! shared by every worker of the fleet (ScyllaDB or Apache Cassandra 5: only
//! portable CQL on this path).
//!
//! Unlike the embedded store, this one has no store-wide commit order (many
//! workers write at once), so its projections are not checkpointed
//! followers of the journal: [`EventStore::write`] maintains them itself
//! ([`ProjectionMode::Inline`]), with per-user absolute contributions:
//!
//! 1. the user's events go into the journal with a lightweight transaction
//!    (`IF NOT EXISTS` on `(user, bucket, seq)`, one conditional batch per
//!    bucket): gap-free sequence numbers, whoever races;
//! 2. then, idempotently, the id lookup, the target and recent indexes, and
//!    each touched (day, type, campaign) and status-day row of the user as an
//!    absolute count "as of seq S" written `USING TIMESTAMP 2*S` (a replay or
//!    a racing worker writes the same value or loses to a newer one);
//! 3. last, the user's stats row, whose `last_seq` therefore says how far
//!    the user's projections are complete. Loading a user
//!    ([`EventStore::last_seq`]) repairs anything after it from the journal,
//!    so a crash between 1 and 3 is mended before the user's next command
//!    (and before its redelivered commands are checked for duplicates).
//!
//! The argument in full is in actors.md ("Exactly once with ScyllaDB").

mod connect;
mod contrib;
mod outbox;
mod project;
mod read;
pub mod schema;
mod statements;
#[cfg(test)]
mod tests;
mod write;

use super::{
    DailyStat, EventStore, JournalRecord, ProjectionKind, ProjectionMode, StatsQuery, StatusStat,
    StoreError, StoredEvent, UserStats, WriteBatch, WriteOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
pub use connect::{parse_consistency, session, ConnectError, ScyllaConfig};
use scylla::client::session::Session;
use statements::Statements;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events per journal partition (`bucket = seq / BUCKET`).
pub const BUCKET: u64 = 10_000;
/// Partitions per projection key (`shard = hash(user) % SHARDS`).
pub const SHARDS: i32 = 4;
/// Concurrent statements per write or read fan-out.
const CONCURRENCY: usize = 64;
/// Most events per group commit. Each group is a chain of requests, so a
/// commit takes about its size divided by the store's rate: at about
/// 1,000 groups/s (Cassandra sharing 2 cores), a commit of the default
/// 8,192 events takes about 8 s, during which none of its callers is
/// answered, and one request that times out fails all 8,192. 512 is about
/// half a second there.
const COMMIT_EVENTS: usize = 8 * CONCURRENCY;

pub struct ScyllaStore {
    session: Session,
    st: Statements,
    /// The last position handed out (positions are commit-time micros *
    /// 1000 + n, increasing within this process).
    last_pos: AtomicU64,
    /// Events per journal partition ([`BUCKET`]; smaller in tests).
    bucket_size: u64,
    /// Whether commits record themselves in the outbox.
    outbox: bool,
    /// Test hook: fail every commit right before its stats row (a crash
    /// between the contribution rows and the mark).
    #[cfg(test)]
    pub(crate) crash_before_stats: std::sync::atomic::AtomicBool,
    /// Recent statistics answers, by query (see `ScyllaConfig::stats_cache_ttl`).
    stats_cache: read::StatsCache,
    /// Stats rows this process read or wrote last, per user (`None`: no
    /// row). Any stats row ever stored is exact as of its `last_seq`, so an
    /// older copy is still a valid starting point for the next commit.
    stats_rows: std::sync::Mutex<std::collections::HashMap<String, Option<UserStats>>>,
    /// Small listing rows (days, keys, minutes) this process has written.
    written: std::sync::Mutex<std::collections::HashSet<project::Small>>,
}

impl ScyllaStore {
    /// Connects, checks that the keyspace holds the schema this build
    /// knows (`tracking schema apply` creates it) and prepares statements.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<Self, ConnectError> {
        let session = session(cfg).await?;
        schema::check(&session, &cfg.keyspace).await?;
        let st = Statements::prepare(&session, &cfg.keyspace).await?;
        Ok(ScyllaStore {
            session,
            st,
            last_pos: AtomicU64::new(0),
            bucket_size: BUCKET,
            outbox: cfg.outbox,
            #[cfg(test)]
            crash_before_stats: Default::default(),
            written: Default::default(),
            stats_rows: Default::default(),
            stats_cache: read::StatsCache::new(cfg.stats_cache_ttl),
        })
    }

    /// The journal bucket of a seq.
    pub(crate) fn bucket(&self, seq: u64) -> i64 {
        (seq / self.bucket_size) as i64
    }

    /// Whether a seq is the last of its bucket (a later bucket may exist).
    pub(crate) fn ends_bucket(&self, seq: u64) -> bool {
        (seq + 1).is_multiple_of(self.bucket_size)
    }

    /// The stats row of `user` this process saw last (see `stats_rows`).
    fn kept_stats(&self, user: &str) -> Option<Option<UserStats>> {
        self.stats_rows.lock().ok()?.get(user).cloned()
    }

    /// Remembers a stats row read or written (bounded: forgetting only
    /// costs a read).
    fn keep_stats(&self, user: &str, row: Option<UserStats>) {
        if let Ok(mut rows) = self.stats_rows.lock() {
            if rows.len() >= 20_000 {
                rows.clear();
            }
            rows.insert(user.to_owned(), row);
        }
    }

    /// Whether this process has written this listing row already.
    fn known(&self, item: &project::Small) -> bool {
        self.written.lock().is_ok_and(|w| w.contains(item))
    }

    /// Remembers written listing rows (bounded: forgetting only costs a
    /// repeated, idempotent write).
    fn remember(&self, items: Vec<project::Small>) {
        if let Ok(mut w) = self.written.lock() {
            if w.len() > 100_000 {
                w.clear();
            }
            w.extend(items);
        }
    }

    /// Smaller journal buckets (tests cross bucket boundaries with few events).
    #[cfg(test)]
    pub(crate) fn with_bucket_size(mut self, n: u64) -> Self {
        self.bucket_size = n.max(2);
        self
    }

    /// `n` consecutive positions (the first returned): commit-time order,
    /// unique within this process, close to unique across the fleet.
    fn positions(&self, n: u64) -> u64 {
        let now = (Utc::now().timestamp_micros().max(0) as u64).saturating_mul(1000);
        let mut cur = self.last_pos.load(Ordering::Relaxed);
        loop {
            let first = now.max(cur + 1);
            match self.last_pos.compare_exchange_weak(
                cur,
                first + n.saturating_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return first,
                Err(actual) => cur = actual,
            }
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

/// The projection shard of a user: the embedded log's stable key hash
/// (FNV-1a 64), so every process agrees.
pub(crate) fn shard(user: &str) -> i32 {
    crate::log::embedded::partition_for(user, SHARDS as u32) as i32
}

pub(crate) fn all_shards() -> Vec<i32> {
    (0..SHARDS).collect()
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

pub(crate) fn stored(pos: i64, blob: &[u8]) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent::new(
        pos.max(0) as u64,
        crate::domain::InteractionTracked::decode(blob)?,
    ))
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Unsupported(format!(
        "{what}: the ScyllaDB store keeps its projections inline (no store-wide positions)"
    ))
}

#[async_trait]
impl EventStore for ScyllaStore {
    fn kind(&self) -> &'static str {
        "scylla"
    }

    fn projection_mode(&self) -> ProjectionMode {
        ProjectionMode::Inline
    }

    fn max_commit_events(&self) -> usize {
        COMMIT_EVENTS
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        write::write(self, &batch).await
    }

    async fn last_seq(&self, user_id: &str) -> Result<u64, StoreError> {
        project::load_user(self, user_id).await
    }

    async fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        read::interaction(self, id).await
    }

    async fn interaction_owners(&self, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        read::owners(self, ids).await
    }

    async fn user_events(
        &self,
        user_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::journal(self, user_id, after_seq, u64::MAX, limit).await
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

    async fn rebuild_user(&self, user_id: &str) -> Result<(), StoreError> {
        project::rebuild_user(self, user_id).await
    }

    async fn users(&self, visit: &mut (dyn FnMut(String) + Send)) -> Result<u64, StoreError> {
        read::users(self, visit).await
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
        read::user_stats(self, user_id).await
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

    async fn mark_published(&self, marks: &[(String, u64)]) -> Result<(), StoreError> {
        if !self.outbox || marks.is_empty() {
            return Ok(());
        }
        outbox::mark(self, marks).await
    }

    async fn unpublished(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if !self.outbox {
            return Ok(Vec::new());
        }
        outbox::unpublished(self, older_than, limit).await
    }
}
