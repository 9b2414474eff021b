//! The embedded event store: an append-only journal of files ([`journal`])
//! and, derived from it, indexes and projections in an LSM ([fjall]) on
//! local disk.
//!
//! Every event and rejection is written once, in position order, to the
//! journal's segment files: one `write` and one `fdatasync` per commit is
//! the store's only durable write. The LSM holds what is derived from the
//! journal (indexes, projections), written unsynced and made durable by
//! checkpoints ([`index`]); anything a crash loses of it is derived again
//! at open.
//!
//! # Key layout
//!
//! `s` is a string with a `u16` big-endian length prefix, `raw` a string
//! that ends its key, integers are big-endian, `day` is the date as 4
//! bytes that sort like dates, `type` one byte (click 0, view 1, like 2),
//! `camp` is `0x00` (no campaign) or `0x01 s`.
//!
//! | keyspace     | key                                     | value                                 |
//! |--------------|-----------------------------------------|---------------------------------------|
//! | `pos`        | `u64 pos`                               | the record's journal location (`u64 segment, u32 offset, u32 len`) |
//! | `journal`    | `s user, u64 seq`                       | `u64 pos`                             |
//! | `last_seq`   | `raw user`                              | `u64 seq`                             |
//! | `ids`        | `raw interaction id`                    | `journal-key, u64 pos`                |
//! | `target`     | `s target id, day, u64 pos`             | empty                                 |
//! | `rejections` | `raw command id`                        | `u64 pos`                             |
//! | `meta`       | `format` / `indexed` / `cursor/<name>`  | `u32 version` / `u64 pos` / `u64 pos` |
//! | `p_daily`    | `0x00` (checkpoint)                     | `u64 pos`                             |
//! |              | `0x01 day type camp`                    | `u64 count, u64 unique users`         |
//! |              | `0x02 day type camp raw user`           | empty (unique-user membership)        |
//! | `p_status`   | `0x00` (checkpoint) / `0x01 day`        | `u64 pos` / `u64 accepted, u64 rejected` |
//! | `p_users`    | `0x00` (checkpoint) / `0x01 raw user`   | `u64 pos` / 5 × `u64`, 2 × (`i64 s`, `u32 ns`) |
//!
//! Strings inside keys are length-prefixed, so no id can run into the next
//! component whatever bytes it holds; rows come back in key order and the
//! readers sort where string order matters (daily stats by campaign).
//! The journal's records are `0x03 event` (the event's compact encoding:
//! fields by position, timestamps as integers), `0x01 event` (rmp-serde,
//! named: written before the compact one, still read) or `0x02
//! rejection`; formats 1 and 2 kept them in the LSM and are upgraded at
//! open ([`migrate`]); format 3's journal holds named events only and is
//! recorded as format 4 at open (see [`FORMAT_VERSION`]).
//!
//! # Crash safety
//!
//! - [`EventStore::write`] checks the batch (last seqs, ids taken, command
//!   ids) under the writer lock, appends its records' frames to the
//!   journal and fdatasyncs them: when `write` returns, every record of it
//!   is durable. A crash before that leaves at most a torn last commit,
//!   which the next open cuts off (it was never acknowledged).
//! - Once [`EventStore::defer_syncs`] was called (the embedded log makes
//!   every acknowledgement final through [`EventStore::make_durable`]
//!   first), a commit without a rejection returns unsynced; the journal is
//!   fdatasynced at `make_durable`, before any ingestion ([`pending`]) and
//!   index checkpoint ([`index`]), with any commit holding a rejection
//!   (whose command id the LSM may flush at any time) and when a segment
//!   is closed. So nothing derived is ever durable ahead of the journal:
//!   a power loss drops a journal tail that nothing acknowledged or
//!   derived durably, which the next open cuts off like a torn commit.
//!   [`EventStore::durable_head`] is the last synced position.
//! - Then, still under the lock, the records' index entries are put in
//!   place, not synced (those of events and the last seqs in memory
//!   until the next checkpoint ingests them, [`pending`]; the rejections
//!   in one LSM batch), and only then does the head move. Reads see
//!   only positions up to the head (see [`read`]), so they never meet a
//!   record without its entries. If that batch fails, the records are
//!   durable but unindexed: the store refuses every write until it is
//!   opened again, which indexes them.
//! - [`index`] makes the entries durable every 2 s and records the head
//!   they cover (`meta/indexed`); at open, the records after it are indexed
//!   again from the journal. A position entry never exists without its
//!   record (entries are written after the fsync), so an index ahead of
//!   the journal means the journal lost records: at open every derived
//!   keyspace is emptied and derived again from what it holds, and the
//!   store's durable head shows the loss (the service's start compares it
//!   with the command log's witness).
//! - Positions come from the journal's last record, so a restart never
//!   hands out a position twice.
//! - Each projection keeps its checkpoint in its *own* keyspace, and
//!   [`EventStore::apply`] puts the rows and the new checkpoint in place
//!   in one commit, in memory ([`pending`]). A checkpoint seals what is
//!   held (whole applies) and ingests each keyspace's part as tables
//!   registered at once, so after any crash a projection holds either the
//!   rows and the checkpoint of an apply or neither: records at or below
//!   the checkpoint are skipped on replay (no double counting), records
//!   above it are read again from the journal, which is durable before
//!   any projection sees it (nothing lost). A lost apply is simply redone
//!   from the journal.
//! - `reset` clears the keyspace (rows and checkpoint at once) and fsyncs.
//!
//! # Tuning
//!
//! `manual_journal_persist(true)`: the store chooses each batch's
//! durability itself (none for the rejections' index, `SyncAll` for
//! metadata) instead of an extra flush on every commit. The block cache is 16 MiB and each
//! keyspace's memtable 4 MiB (the events' indexes, the last seqs and
//! the projections bypass theirs: their entries are ingested as sorted
//! tables, see [`pending`]); one
//! background thread flushes and
//! compacts, merging 16 level-0 tables at a time (the constants below
//! say why). Filters and
//! indexes are partitioned below level 0, so a point lookup's cost does
//! not grow with the tables ([`keyspace_options`]), except the level-1
//! filters of the keyspaces asked mostly for absent keys (`ids`,
//! `last_seq`), whole and pinned ([`absent_key_options`]). The recent
//! rows of the daily-stats and status projections are also held in memory
//! for reads ([`mirror`]), and the last sequence numbers of recently
//! written users for the appends, which number or check each group
//! after them ([`seqs`]).

mod index;
mod journal;
pub(crate) mod keys;
mod migrate;
mod mirror;
mod pending;
mod project;
mod read;
mod recent;
mod seqs;
mod warm;
mod write;

#[cfg(test)]
mod power_loss_tests;
#[cfg(test)]
mod tests;

use crate::store::{
    DailyStat, EventStore, JournalRecord, ProjectionKind, StatsQuery, StatusStat, StoreError,
    StoredEvent, UserStats, WriteBatch, WriteOutcome,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use fjall::config::{PartitioningPolicy, PinningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// On-disk format of this module; bumped on incompatible layout changes.
/// Formats 1 and 2 are upgraded at open ([`migrate`]). Format 4 is
/// format 3 whose journal may hold events in the compact encoding
/// (`keys::POS_EVENT_COMPACT`): a format-3 store is recorded as format 4
/// at open, nothing to convert, and a build that knows only format 3
/// refuses a format-4 store by its version, not by a record it cannot
/// read.
const FORMAT_VERSION: u32 = 4;
/// The journal's directory inside the store's.
const JOURNAL_DIR: &str = "events";

/// The embedded store. Cheap to clone (one shared database).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// The journal's files: every event and rejection, in position order.
    records: journal::Journal,
    journal: Keyspace,
    last_seq: Keyspace,
    pos: Keyspace,
    ids: Keyspace,
    target: Keyspace,
    rejections: Keyspace,
    meta: Keyspace,
    daily: Keyspace,
    status: Keyspace,
    users: Keyspace,
    /// Recent rows of `daily` and `status`, for reads (see [`mirror`]).
    daily_mirror: mirror::Mirror<crate::store::projections::DailyKey>,
    status_mirror: mirror::Mirror<NaiveDate>,
    /// Projection rows written recently, read back by the applies (see
    /// [`project`]).
    warm: warm::Warm,
    /// Serializes writes: the conflict checks, the journal's append and
    /// the indexes' commit are one step.
    writer: std::sync::Mutex<()>,
    /// Serializes index checkpoints ([`Inner::checkpoint_indexes`]) and
    /// the ingestions of [`pending`].
    indexing: std::sync::Mutex<()>,
    /// The write-once indexes' entries not yet in the LSM ([`pending`]).
    pending: pending::Pending,
    /// Recently written users' last sequence numbers (see [`seqs`]).
    seqs: std::sync::Mutex<seqs::SeqCache>,
    /// The last committed position (updated after each commit).
    head: AtomicU64,
    /// Per projection (in `ProjectionKind::ALL` order): the checkpoint, and
    /// the lock that serializes its applies and resets.
    checkpoints: [Arc<tokio::sync::Mutex<u64>>; 3],
    /// Set once a commit found the database poisoned (a journal write
    /// failed, e.g. on a full disk): it refuses every write until it is
    /// opened again, which only a restart does.
    broken: std::sync::OnceLock<String>,
    /// Whether commits leave the journal's `fdatasync` to the next sync
    /// point ([`EventStore::defer_syncs`]; see "Crash safety").
    defer_syncs: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// Refuses every later write until the store is opened again.
    fn break_with(&self, why: String) {
        if self.broken.set(why.clone()).is_ok() {
            tracing::error!("{why}");
        }
    }

    /// The error of a failed journal append: what reached the file is
    /// unknown (a torn commit), so nothing more may be appended behind it
    /// until a reopen cuts it off.
    /// Makes every record written so far durable (see [`journal::Journal::sync`]);
    /// a failure breaks the store as a failed append does.
    fn sync_journal(&self) -> Result<u64, StoreError> {
        self.records.sync().map_err(|e| self.journal_failed(e))
    }

    fn journal_failed(&self, e: StoreError) -> StoreError {
        self.break_with(format!(
            "the event store's journal failed to write ({e}; a full disk?) and refuses every \
             write until the store is opened again: restart the service"
        ));
        e
    }

    /// The error of a failed index commit after a durable append: the
    /// events are stored but not indexed; the reopen derives them.
    fn index_failed(&self, e: fjall::Error) -> StoreError {
        self.break_with(format!(
            "the event store's indexes failed to write ({e}) behind a durable commit; the \
             store refuses every write until it is opened again (which indexes it): restart \
             the service"
        ));
        db_err(e)
    }

    fn refuse_if_broken(&self) -> Result<(), StoreError> {
        match self.broken.get() {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

/// Maps a fjall error: I/O-like failures are retryable, the rest is corruption.
fn db_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(_)
        | fjall::Error::Storage(fjall::LsmError::Io(_))
        | fjall::Error::Poisoned
        | fjall::Error::Locked
        | fjall::Error::KeyspaceDeleted => StoreError::Unavailable(e.to_string()),
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn proj_index(p: ProjectionKind) -> usize {
    match p {
        ProjectionKind::DailyStats => 0,
        ProjectionKind::Status => 1,
        ProjectionKind::UserStats => 2,
    }
}

/// Block cache. The OS page cache holds the files too (outside the
/// process's RSS), so a cache miss costs a copy, not a disk read; 16 MiB
/// instead of 32 took 25 MiB off the worker's peak in the 1,000,000-user
/// scenario (`loadtest/scenarios/memory.sh`).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// fjall's background threads (flushes and compactions). One: with more,
/// fjall's first worker hands every compaction request it receives back
/// to the queue for the others and takes it again at once, so while
/// another worker compacts it spins on the queue (measured: about 2.5 µs
/// of CPU per event, a fifth of the background threads' time, in
/// `loadtest/scenarios/pipeline-profile.sh`). One worker does the same
/// flushes and compactions in turn.
const WORKER_THREADS: usize = 1;
/// Users per generation of the last-sequence cache ([`seqs`]): two
/// generations hold the last 131,072 to 262,144 users written, about 18 MiB
/// at most (estimated), which covers the 100,000 users of the pipeline's
/// load test.
const SEQ_CACHE_USERS: usize = 131_072;
/// Per keyspace (fjall's default is 64 MiB; twelve keyspaces at that size
/// would be most of a pod's memory limit).
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;

/// Level-0 tables (memtable flushes) merged into level 1 together
/// (fjall's default is 4). The indexes' keys are random (ids, users,
/// targets), so every level-0 table overlaps all of level 1 and each
/// merge rewrites level 1 whole: merging 16 flushes at a time instead of
/// 4 rewrites it a quarter as often (the background thread's CPU per
/// event 9.0-10.2 -> 5.1-5.6 µs in `loadtest/scenarios/pipeline-profile.sh`,
/// medians of 3, two series). A point lookup checks up to 16 level-0
/// filters more, which are pinned in memory; fjall slows writes only from
/// 20 level-0 tables.
const L0_TABLES: u8 = 16;
/// Target size of a table below level 0, so that level 1 (16 tables of
/// it before it spills into level 2) stays 256 MiB as with fjall's
/// defaults (4 × 64 MiB).
const TABLE_BYTES: u64 = 16 * 1024 * 1024;

/// The options every keyspace is created with (fjall keeps them with the
/// keyspace: a store created by an earlier version keeps its own).
///
/// Filters and indexes are *partitioned* from the first level down.
/// fjall's default partitions them only from the fourth level and pins
/// only level 0's filters, so a point lookup in a first-level table loaded
/// that table's whole filter block: about 1 MiB for a 64 MiB table of
/// interaction ids. Once the id and sequence keyspaces outgrew the block
/// cache, every command's lookups read and checksummed megabytes: at
/// 30,000/s offered the pipeline fell from about 21,000/s to under 1,000/s
/// after about 1.4 million events and did not recover (BENCHMARKS.md as
/// of 2026-11-30, "Sustained for 60 s", in git history). Partitioned, a lookup loads one small filter
/// partition and one index partition, found through a top-level index
/// kept in memory, so its cost no longer grows with the table. Level 0
/// (4 MiB flushes, filters pinned) stays whole: partitioning it too cost
/// about 2 % of throughput in short runs and bought nothing more.
fn keyspace_options() -> KeyspaceCreateOptions {
    let compaction = fjall::compaction::Leveled::default()
        .with_l0_threshold(L0_TABLES)
        .with_table_target_size(TABLE_BYTES);
    KeyspaceCreateOptions::default()
        .compaction_strategy(Arc::new(compaction))
        .max_memtable_size(MEMTABLE_BYTES)
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

/// The options of the keyspaces looked up mostly for keys they do not
/// hold, `ids` (every append checks each of its ids) and `last_seq` (a
/// user new to the store, or gone from the seq cache): those of
/// [`keyspace_options`], except that the first level's filters are whole
/// and pinned. A pinned whole filter refuses an absent key with a probe
/// or two, where a partitioned one first searches its top-level index for
/// the partition to load. Level 1 holds at most 16 tables of
/// `TABLE_BYTES` (256 MiB of entries) before it spills into level 2, so
/// its pinned filters stay bounded (about 1.3 bytes per key, a few MiB);
/// the deeper levels stay partitioned.
fn absent_key_options() -> KeyspaceCreateOptions {
    keyspace_options()
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, false, true]))
        .filter_block_pinning_policy(PinningPolicy::new([true, true, false]))
}

/// The database marks a directory as its own with a `version` file. A
/// directory that holds files but not that one is a damaged or partly
/// copied store: opening it would fail with a misleading I/O error, and
/// it must never be taken for an empty one.
fn refuse_a_store_without_its_version(dir: &Path) -> Result<(), StoreError> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(()); // Not there yet: created empty.
    };
    if entries.next().is_some() && !dir.join("version").exists() {
        return Err(StoreError::Corrupt(format!(
            "{} holds files but no `version` file: a damaged or incomplete store. \
             Restore it from a backup, or move it away to start with an empty store \
             (the command log's records not yet in a backup would then be lost)",
            dir.display()
        )));
    }
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let inner = Arc::new(Self::open_inner(dir)?);
        index::start_checkpoints(Arc::downgrade(&inner))?;
        Ok(EmbeddedStore { inner })
    }

    /// As [`Self::open`], without the periodic index checkpoints: tests
    /// that look at what memory holds run them themselves.
    #[cfg(test)]
    fn open_without_checkpoints(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        Ok(EmbeddedStore {
            inner: Arc::new(Self::open_inner(dir)?),
        })
    }

    fn open_inner(dir: &Path) -> Result<Inner, StoreError> {
        refuse_a_store_without_its_version(dir)?;
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            .cache_size(CACHE_BYTES)
            .worker_threads(WORKER_THREADS)
            .open()
            .map_err(db_err)?;
        let ks_with = |name: &str, options: fn() -> KeyspaceCreateOptions| {
            db.keyspace(name, options).map_err(db_err)
        };
        let ks = |name: &str| ks_with(name, keyspace_options);
        let meta = ks("meta")?;
        let pos = ks("pos")?;
        let journal = ks("journal")?;
        let (records, mut head) = journal::Journal::open(&dir.join(JOURNAL_DIR))?;
        let unreadable = |found: String| {
            StoreError::Corrupt(format!(
                "store format {found} is not one this build reads (1 to 3, upgraded at open, or {FORMAT_VERSION}); a newer build wrote it?"
            ))
        };
        let format = match meta.get("format").map_err(db_err)? {
            Some(v) => Some(
                <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| unreadable(format!("{v:?}")))?,
            ),
            None => None,
        };
        // Whether this open records the current format (a new or upgraded store).
        let record_format = match format {
            Some(FORMAT_VERSION) => false,
            Some(3) => true,
            Some(found @ (1 | 2)) => {
                if found == 1 {
                    migrate::v1_to_v2(&db, &journal, &pos)?;
                    let mut b = db.batch().durability(Some(PersistMode::SyncAll));
                    b.insert(&meta, "format", 2u32.to_be_bytes());
                    b.commit().map_err(db_err)?;
                }
                head = migrate::v2_to_v3(&db, &pos, &meta, &records)?;
                true
            }
            Some(found) => return Err(unreadable(found.to_string())),
            None => {
                if pos.first_key_value().is_some() {
                    return Err(StoreError::Corrupt("store without format version".into()));
                }
                if head > 0 {
                    return Err(StoreError::Corrupt(format!(
                        "{} holds a journal but the store beside it has no format: a damaged store",
                        dir.join(JOURNAL_DIR).display()
                    )));
                }
                true
            }
        };
        if record_format {
            let mut b = db.batch().durability(Some(PersistMode::SyncAll));
            b.insert(&meta, "format", FORMAT_VERSION.to_be_bytes());
            b.commit().map_err(db_err)?;
        }
        let daily = ks("p_daily")?;
        let status = ks("p_status")?;
        let users = ks("p_users")?;
        let (last_seq, ids, target, rejections) = (
            ks_with("last_seq", absent_key_options)?,
            ks_with("ids", absent_key_options)?,
            ks("target")?,
            ks("rejections")?,
        );
        // Index entries are written only after their records are durable:
        // entries beyond the journal's end mean the journal lost records.
        // What is derived is dropped and derived again from what is left;
        // the projections start over (they counted the lost records).
        if let Some(last) = pos.last_key_value() {
            let indexed = keys::u64_at(&last.key().map_err(db_err)?, 0, "position key")?;
            if indexed > head {
                crate::internal_events::store_journal_lost(indexed, head);
                for k in [
                    &pos,
                    &journal,
                    &last_seq,
                    &ids,
                    &target,
                    &rejections,
                    &daily,
                    &status,
                    &users,
                ] {
                    k.clear().map_err(db_err)?;
                }
                meta.remove(index::INDEXED).map_err(db_err)?;
                db.persist(PersistMode::SyncAll).map_err(db_err)?;
            }
        }
        let mut checkpoints = [0u64; 3];
        for (cp, k) in checkpoints.iter_mut().zip([&daily, &status, &users]) {
            if let Some(v) = k.get(keys::CHECKPOINT).map_err(db_err)? {
                *cp = keys::u64_at(&v, 0, "checkpoint")?;
            }
        }
        let today = chrono::Utc::now().date_naive();
        let from = mirror::window_start(today);
        let daily_mirror = mirror::Mirror::new(
            today,
            project::daily_rows(project::Source::Keyspace(&daily), from, None)?,
        );
        let status_mirror = mirror::Mirror::new(
            today,
            project::status_rows(project::Source::Keyspace(&status), from, None)?,
        );
        let inner = Inner {
            daily_mirror,
            status_mirror,
            warm: warm::Warm::default(),
            journal,
            last_seq,
            ids,
            target,
            rejections,
            pos,
            meta,
            daily,
            status,
            users,
            db,
            records,
            writer: std::sync::Mutex::new(()),
            indexing: std::sync::Mutex::new(()),
            pending: pending::Pending::default(),
            seqs: std::sync::Mutex::new(seqs::SeqCache::new(SEQ_CACHE_USERS)),
            head: AtomicU64::new(head),
            checkpoints: checkpoints.map(|cp| Arc::new(tokio::sync::Mutex::new(cp))),
            broken: std::sync::OnceLock::new(),
            defer_syncs: std::sync::atomic::AtomicBool::new(false),
        };
        inner.derive_unindexed()?;
        Ok(inner)
    }

    /// Runs blocking fjall work off the async threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        self.inner.refuse_if_broken()?;
        self.blocking(move |s| s.write(&batch)).await
    }

    /// Inline, like `interaction_owners`: one point lookup.
    async fn last_seq(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.stored_last_seq(user_id)
    }

    async fn interaction(&self, interaction_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let id = interaction_id.to_owned();
        self.blocking(move |s| s.interaction(&id)).await
    }

    /// Served inline, not on the blocking pool: point lookups answered from
    /// memtables, bloom filters and the block cache take microseconds, less
    /// than a hop to another thread (this is on every command's path).
    async fn interaction_owners(&self, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        ids.iter()
            .map(|id| self.inner.interaction_owner(id))
            .collect()
    }

    async fn user_events(
        &self,
        user_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let user = user_id.to_owned();
        self.blocking(move |s| s.user_events(&user, after_seq, limit))
            .await
    }

    async fn recent(
        &self,
        before_pos: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.blocking(move |s| s.recent(before_pos, limit)).await
    }

    async fn by_target(
        &self,
        target_id: &str,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let target = target_id.to_owned();
        self.blocking(move |s| s.by_target(&target, from, to, limit))
            .await
    }

    async fn scan(&self, after_pos: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        self.blocking(move |s| s.scan(after_pos, limit)).await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let key = format!("cursor/{name}");
        self.blocking(move |s| match s.meta.get(&key).map_err(db_err)? {
            None => Ok(0),
            Some(v) => keys::u64_at(&v, 0, "cursor"),
        })
        .await
    }

    /// The journal is synced first (nothing to do unless syncs are
    /// deferred): the LSM may flush the cursor at any time, and a cursor
    /// must never claim a position a power loss could take back.
    async fn set_cursor(&self, name: &str, pos: u64) -> Result<(), StoreError> {
        let key = format!("cursor/{name}");
        self.blocking(move |s| {
            s.sync_journal()?;
            s.meta.insert(key, pos.to_be_bytes()).map_err(db_err)
        })
        .await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(self.inner.head.load(Ordering::Acquire))
    }

    fn needs_restart(&self) -> Option<String> {
        self.inner.broken.get().cloned()
    }

    fn durable_head(&self) -> Option<u64> {
        // The head moves once a commit's entries are in place, the synced
        // position once its frames are durable: both are needed.
        let head = self.inner.head.load(Ordering::Acquire);
        Some(head.min(self.inner.records.synced()))
    }

    fn make_durable(&self) -> Result<Option<u64>, StoreError> {
        self.inner.sync_journal()?;
        Ok(self.durable_head())
    }

    fn defer_syncs(&self) {
        self.inner.defer_syncs.store(true, Ordering::Release);
    }

    async fn checkpoint(&self, projection: ProjectionKind) -> Result<u64, StoreError> {
        Ok(*self.inner.checkpoints[proj_index(projection)].lock().await)
    }

    async fn apply(
        &self,
        projection: ProjectionKind,
        records: &[JournalRecord],
    ) -> Result<u64, StoreError> {
        let cp = Arc::clone(&self.inner.checkpoints[proj_index(projection)])
            .lock_owned()
            .await;
        // Fold in memory (pure CPU, borrowing the records); only the
        // aggregate moves to the blocking task, with the checkpoint lock,
        // which the task updates after its commit (cancellation-safe).
        let delta = project::Delta::fold(projection, *cp, records)?;
        let Some(delta) = delta else {
            return Ok(*cp);
        };
        self.blocking(move |s| s.apply(delta, cp)).await
    }

    async fn reset(&self, projection: ProjectionKind) -> Result<(), StoreError> {
        let cp = Arc::clone(&self.inner.checkpoints[proj_index(projection)])
            .lock_owned()
            .await;
        self.blocking(move |s| s.reset(projection, cp)).await
    }

    /// Recent days come from memory, inline; older ones from the keyspace.
    async fn daily_stats(&self, query: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
        if let Some(rows) = self.inner.recent_daily_stats(query) {
            return Ok(rows);
        }
        let query = query.clone();
        self.blocking(move |s| s.daily_stats(&query)).await
    }

    /// Like `daily_stats`.
    async fn status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatusStat>, StoreError> {
        if let Some(rows) = self.inner.recent_status_stats(from, to) {
            return Ok(rows);
        }
        self.blocking(move |s| s.status_stats(from, to)).await
    }

    async fn user_stats(&self, user_id: &str) -> Result<Option<UserStats>, StoreError> {
        let user = user_id.to_owned();
        self.blocking(move |s| s.user_stats(&user)).await
    }

    async fn all_user_stats(&self) -> Result<Vec<UserStats>, StoreError> {
        self.blocking(|s| s.all_user_stats()).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // At shutdown: the zeros kept ahead of the journal go too (the
        // next open would cut them).
        self.blocking(|s| {
            s.persist_all()?;
            s.records.trim().map_err(|e| s.journal_failed(e))
        })
        .await
    }

    fn memory(&self) -> Option<crate::store::StoreMemory> {
        let db = &self.inner.db;
        Some(crate::store::StoreMemory {
            // The memtables, and the index entries held for the next
            // checkpoint's ingestion ([`pending`]).
            write_buffer_bytes: db.write_buffer_size() + self.inner.pending.bytes() as u64,
            cache_bytes: db.cache_size(),
            pending_flushes: db.outstanding_flushes() as u64,
        })
    }
}
