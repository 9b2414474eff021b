//! The indexes' durability.
//!
//! A write makes only the journal durable (one `fdatasync` of its frames);
//! its index entries stay unsynced: those of `pos`, `journal`, `ids`,
//! `target` and `last_seq` in memory ([`super::pending`]), those of
//! `rejections` in the LSM's memtables and fjall's own log. Every
//! [`CHECKPOINT_EVERY`] (sooner when they take half their bound), a
//! checkpoint ingests the entries held in memory into the LSM (sorted
//! tables, synced as they are written), makes the
//! rest durable (`persist(SyncAll)`) and then records in `meta/indexed`
//! the head they covered: every index entry up to that head was in place
//! before the checkpoint began (the head moves after a write's entries
//! are, under the writer lock). The record itself becomes durable with
//! the next checkpoint, so `meta/indexed` never claims more than what is
//! on disk.
//!
//! At open, the journal's records after `meta/indexed` are indexed again
//! ([`Inner::derive_unindexed`]) before the store serves: their entries
//! are the same keys and values, so those that survived the crash are
//! rewritten unchanged and those it lost come back. Entries beyond the
//! journal's last record (the journal lost records) are dealt with before
//! this, at open: every derived keyspace is emptied and derived again
//! from what the journal holds (see the parent module).

use super::journal::{self, Location};
use super::migrate::Progress;
use super::pending::{Ix, Staged};
use super::write::index_event;
use super::{db_err, keys, read::decode_record, Inner};
use crate::internal_events as ev;
use crate::store::{JournalRecord, StoreError};
use fjall::{OwnedWriteBatch, PersistMode};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

/// How often the indexes are made durable. A crash loses at most this
/// much indexing, which the next open redoes from the journal.
///
/// Each checkpoint ingests one table per index into the LSM's level 0,
/// and the LSM merges level 0 into level 1 every `L0_TABLES` of them
/// (`super::keyspace_options`). The keys are random, so each merge
/// rewrites level 1 whole: a checkpoint every 2 s instead of every
/// second halves how often, for twice the entries held in memory
/// (`loadtest/scenarios/pipeline-steady.sh`, whose minute holds several
/// merges: fjall's thread 3.2-3.6 -> 1.2-1.4 µs per event at 30,000/s).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// How often the checkpoint thread looks at what the memory layer holds
/// between checkpoints: past half its bound a checkpoint starts at once,
/// so that at high rates the bound is met by this thread, not by a write
/// that would ingest under the writer lock.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// The `meta` key holding the head the durable indexes cover.
pub(super) const INDEXED: &str = "indexed";
/// Records indexed per batch at open.
const CHUNK: usize = 4096;
const WHAT: &str = "indexing the journal's records not yet indexed durably";

/// Runs the periodic checkpoints on their own thread while the store lives.
pub(super) fn start_checkpoints(store: Weak<Inner>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("store-index-checkpoint".into())
        .spawn(move || loop {
            let mut waited = Duration::ZERO;
            let inner = loop {
                std::thread::sleep(LOOK_EVERY);
                waited += LOOK_EVERY;
                let Some(inner) = store.upgrade() else {
                    return;
                };
                if waited >= CHECKPOINT_EVERY || inner.pending.unsealed().half_full() {
                    break inner;
                }
            };
            if let Err(e) = inner.checkpoint_indexes() {
                ev::store_error("index_checkpoint", &e);
            }
        })
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("starting the index checkpoints: {e}")))
}

impl Inner {
    fn indexed(&self) -> Result<u64, StoreError> {
        match self.meta.get(INDEXED).map_err(db_err)? {
            Some(v) => keys::u64_at(&v, 0, "indexed head"),
            None => Ok(0),
        }
    }

    /// Makes every committed index entry and every apply durable, and
    /// records the head the indexes cover. Idle (no fsync) when nothing
    /// was written or applied since.
    pub(super) fn checkpoint_indexes(&self) -> Result<(), StoreError> {
        self.checkpoint(false)
    }

    /// As [`Self::checkpoint_indexes`], and syncs the LSM's own log (the
    /// cursors in `meta`) even when no record was written since (at
    /// shutdown).
    pub(super) fn persist_all(&self) -> Result<(), StoreError> {
        self.checkpoint(true)
    }

    fn checkpoint(&self, always: bool) -> Result<(), StoreError> {
        let _one = self.indexing.lock().unwrap_or_else(|e| e.into_inner());
        let head = self.head.load(Ordering::Acquire);
        // `meta/indexed` never claims a record that is not durable.
        self.sync_journal()?;
        // A broken store may hold records it could not index: its
        // checkpoint must not claim them (the reopen derives them).
        let record = self.broken.get().is_none() && self.indexed()? < head;
        if !record && !always {
            // Applies since the last checkpoint (the projections catching
            // up while nothing is written) become durable all the same.
            return self.ingest_pending();
        }
        // Every entry of a position up to `head` is in the LSM or held
        // unsealed (staged before the head moved): ingested now.
        self.ingest_pending()?;
        self.db.persist(PersistMode::SyncAll).map_err(db_err)?;
        if !record {
            return Ok(());
        }
        self.meta
            .insert(INDEXED, head.to_be_bytes())
            .map_err(db_err)?;
        self.db.persist(PersistMode::SyncAll).map_err(db_err)
    }

    /// Indexes the journal's records after `meta/indexed` (see the module
    /// docs); at open, before anything reads or writes.
    pub(super) fn derive_unindexed(&self) -> Result<(), StoreError> {
        let indexed = self.indexed()?;
        let head = self.head.load(Ordering::Acquire);
        if indexed > head {
            return Err(StoreError::Corrupt(format!(
                "the indexes cover records up to {indexed} but the journal ends at {head}: \
                 the journal lost acknowledged records. Restore the store from a backup"
            )));
        }
        if indexed == head {
            return Ok(());
        }
        let (segment, offset) = match indexed {
            0 => (1, 0),
            p => {
                let v = self
                    .index_get(Ix::Pos, &p.to_be_bytes())?
                    .ok_or_else(|| StoreError::Corrupt(format!("indexed record {p} unknown")))?;
                let loc = Location::decode(&v).ok_or_else(|| keys::corrupt("position value"))?;
                (loc.segment, loc.end())
            }
        };
        let estimate = head - indexed;
        let mut progress = Progress::start(WHAT, estimate);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut done = 0u64;
        journal::read_from(&self.records, segment, offset, |frame, loc| {
            if frame.pos != indexed + done + chunk.len() as u64 + 1 {
                return Err(StoreError::Corrupt(format!(
                    "journal record {} where {} was expected",
                    frame.pos,
                    indexed + done + chunk.len() as u64 + 1
                )));
            }
            chunk.push((decode_record(frame)?, loc));
            if chunk.len() == CHUNK {
                self.index_records(&chunk)?;
                done += chunk.len() as u64;
                chunk.clear();
                progress.at(done);
            }
            Ok(true)
        })?;
        self.index_records(&chunk)?;
        done += chunk.len() as u64;
        if done != estimate {
            return Err(StoreError::Corrupt(format!(
                "the journal ends after {done} of the {estimate} records after {indexed}"
            )));
        }
        self.checkpoint_indexes()?;
        progress.done(done);
        Ok(())
    }

    /// Writes the index entries of records read back from the journal.
    fn index_records(&self, records: &[(JournalRecord, Location)]) -> Result<(), StoreError> {
        let mut fb =
            OwnedWriteBatch::with_capacity(self.db.clone(), records.len()).durability(None);
        let mut staged = Staged::with_capacity(4 * records.len());
        for (record, loc) in records {
            let pos = record.pos();
            staged.put(Ix::Pos, &pos.to_be_bytes(), &loc.encode());
            match record {
                JournalRecord::Event(e) => {
                    index_event(&mut staged, &e.event, e.event.seq, pos)?;
                }
                JournalRecord::Rejection(r) => {
                    fb.insert(
                        &self.rejections,
                        r.rejection.command_id.as_str(),
                        pos.to_be_bytes(),
                    );
                }
            }
        }
        fb.commit().map_err(db_err)?;
        let unsealed = self.pending.commit(staged);
        self.ingest_if_over(unsealed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{batch, rejection};
    use super::super::{keys, EmbeddedStore};
    use super::INDEXED;
    use crate::store::{EventStore, GroupOutcome};
    use chrono::NaiveDate;
    use fjall::PersistMode;

    /// Removes every index entry of the records after `after`, as a crash
    /// that lost the unsynced index batches leaves them, and records that
    /// the durable indexes cover `after`.
    fn lose_indexes_after(store: &EmbeddedStore, after: u64) {
        let s = &store.inner;
        // Into the LSM first, where this removes them.
        s.persist_all().unwrap();
        let mut b = s.db.batch().durability(Some(PersistMode::SyncAll));
        let records = super::super::read::tests_scan_all(s);
        for r in records.iter().filter(|r| r.pos() > after) {
            b.remove(&s.pos, r.pos().to_be_bytes());
            match r {
                crate::store::JournalRecord::Event(e) => {
                    let ev = &e.event;
                    b.remove(&s.ids, ev.interaction_id.as_str());
                    b.remove(&s.journal, keys::journal_key(&ev.user_id, ev.seq).unwrap());
                    let day = ev.occurred_at.date_naive();
                    b.remove(
                        &s.target,
                        keys::target_key(&ev.target.id, day, e.pos).unwrap(),
                    );
                    let seq = ev.seq - 1;
                    if seq == 0 {
                        b.remove(&s.last_seq, ev.user_id.as_str());
                    } else {
                        b.insert(&s.last_seq, ev.user_id.as_str(), seq.to_be_bytes());
                    }
                }
                crate::store::JournalRecord::Rejection(r) => {
                    b.remove(&s.rejections, r.rejection.command_id.as_str())
                }
            }
        }
        b.insert(&s.meta, INDEXED, after.to_be_bytes());
        b.commit().unwrap();
    }

    #[tokio::test]
    async fn index_entries_a_crash_lost_are_derived_again_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write(batch(0..40, 0, 2).into()).await.unwrap();
        let mut second = batch(0..40, 2, 1);
        second.rejections.push(rejection("cmd-9"));
        store.write(second.into()).await.unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let before = (
            store.scan(0, usize::MAX).await.unwrap(),
            store.user_events("user-7", 0, 100).await.unwrap(),
            store.interaction("user-7-3").await.unwrap(),
            store.by_target("post-3", day, day, 100).await.unwrap(),
        );
        assert_eq!(before.0.len(), 121);
        lose_indexes_after(&store, 50);
        drop(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let after = (
            store.scan(0, usize::MAX).await.unwrap(),
            store.user_events("user-7", 0, 100).await.unwrap(),
            store.interaction("user-7-3").await.unwrap(),
            store.by_target("post-3", day, day, 100).await.unwrap(),
        );
        assert_eq!(after, before);
        assert_eq!(store.last_seq("user-39").await.unwrap(), 3);
        // The append checks see the derived entries: a taken id, a stale seq.
        let again = store.write(batch(7..8, 2, 1).into()).await.unwrap();
        assert!(!matches!(again.groups[0], GroupOutcome::Appended { .. }));
        let next = store.write(batch(7..8, 3, 1).into()).await.unwrap();
        assert_eq!(
            next.groups,
            [GroupOutcome::Appended {
                first_pos: 122,
                first_seq: 4
            }]
        );
        let dup = store.write(second_rejection().into()).await.unwrap();
        assert_eq!(dup.rejections, [None]);
    }

    fn second_rejection() -> crate::store::WriteBatch {
        crate::store::WriteBatch {
            rejections: vec![rejection("cmd-9")],
            ..Default::default()
        }
    }

    /// The journal's files gone: what was derived from them goes too, so
    /// the store's durable head shows the loss (the service's start then
    /// compares it with the command log's witness and refuses).
    #[tokio::test]
    async fn a_journal_that_lost_records_drops_what_was_derived_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write(batch(0..10, 0, 1).into()).await.unwrap();
        let records = store.scan(0, usize::MAX).await.unwrap();
        for p in crate::store::ProjectionKind::ALL {
            store.apply(p, &records).await.unwrap();
        }
        store.flush().await.unwrap();
        drop(store);
        std::fs::remove_dir_all(dir.path().join(super::super::JOURNAL_DIR)).unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.durable_head(), Some(0));
        assert!(store.interaction("user-3-1").await.unwrap().is_none());
        assert_eq!(store.last_seq("user-3").await.unwrap(), 0);
        for p in crate::store::ProjectionKind::ALL {
            assert_eq!(store.checkpoint(p).await.unwrap(), 0, "{p:?}");
        }
        assert!(store.all_user_stats().await.unwrap().is_empty());
        let out = store.write(batch(3..4, 0, 1).into()).await.unwrap();
        assert_eq!(
            out.groups,
            [GroupOutcome::Appended {
                first_pos: 1,
                first_seq: 1
            }]
        );
    }

    /// A user's last seq is replaced by each write: held in memory, then
    /// ingested, the newest value wins over every older one, in memory,
    /// in an ingested table, or in the memtable (where an earlier format
    /// wrote it) and after a reopen.
    #[tokio::test]
    async fn the_newest_last_seq_wins_across_checkpoints_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write(batch(0..3, 0, 2).into()).await.unwrap();
        store.inner.checkpoint_indexes().unwrap();
        // An older value in the memtable, where builds before the memory
        // layer held last seqs wrote them (the same store format).
        let s = &store.inner;
        s.last_seq.insert("user-1", 1u64.to_be_bytes()).unwrap();
        store.write(batch(1..2, 2, 3).into()).await.unwrap();
        let seq = |store: &EmbeddedStore, user: &str| store.inner.stored_last_seq(user).unwrap();
        s.seqs.lock().unwrap().clear();
        assert_eq!(seq(&store, "user-1"), 5, "held in memory");
        store.inner.checkpoint_indexes().unwrap();
        s.seqs.lock().unwrap().clear();
        assert_eq!(seq(&store, "user-1"), 5, "ingested over the memtable's 1");
        assert_eq!(seq(&store, "user-2"), 2);
        store.write(batch(1..2, 5, 1).into()).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(seq(&store, "user-1"), 6, "derived again at open");
        let stale = store.write(batch(1..2, 5, 1).into()).await.unwrap();
        assert_eq!(
            stale.groups,
            [GroupOutcome::Conflict(
                crate::store::AppendConflict::SeqMismatch {
                    expected: 5,
                    actual: 6
                }
            )]
        );
    }

    #[tokio::test]
    async fn a_checkpoint_records_the_head_the_durable_indexes_cover() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write(batch(0..10, 0, 1).into()).await.unwrap();
        store.inner.checkpoint_indexes().unwrap();
        assert_eq!(store.inner.indexed().unwrap(), 10);
        store.write(batch(0..5, 1, 1).into()).await.unwrap();
        assert_eq!(store.inner.indexed().unwrap(), 10);
        store.flush().await.unwrap();
        assert_eq!(store.inner.indexed().unwrap(), 15);
    }
}
