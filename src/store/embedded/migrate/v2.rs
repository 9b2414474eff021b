//! Upgrades a store written in format 1 to format 2, at open.
//!
//! Format 1 kept each event in `journal` (`u64 pos, event`, keyed by user
//! and seq) and pointed to it from `pos` (`0x01 journal key`). Format 2
//! keeps the event in `pos` (`0x01 event`) and only the position in
//! `journal`. Positions are written in increasing order, so the tables
//! `pos` flushes never overlap and fjall moves them down the levels
//! instead of merging them; the user-ordered `journal`, whose keys arrive
//! in random order and are merged level after level, now carries 8 bytes
//! of value instead of the whole event.
//!
//! The upgrade rewrites each event in chunks. An entry is converted in one
//! batch (its `pos` and `journal` values together) and tells its format by
//! its length (a format-2 journal value is exactly 8 bytes), so a crash
//! midway loses nothing: the next open finds format 1 still recorded and
//! converts what is left. The format key is written last, with an fsync.

use super::super::{db_err, keys};
use super::Progress;
use crate::store::StoreError;
use fjall::{Database, Keyspace, PersistMode};
use std::ops::Bound;

/// What the log lines of the upgrade say.
const WHAT: &str = "upgrading format 1 to 2";
/// Events converted per batch.
const CHUNK: usize = 4096;

/// Converts every format-1 journal entry; returns how many were converted.
/// Does not write the format key (the caller does, once this returned).
pub(in super::super) fn v1_to_v2(
    db: &Database,
    journal: &Keyspace,
    pos: &Keyspace,
) -> Result<u64, StoreError> {
    let mut progress = Progress::start(WHAT, journal.approximate_len() as u64);
    let mut converted = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = read_chunk(journal, after.as_deref())?;
        let Some((last, _)) = chunk.last() else {
            break;
        };
        after = Some(last.clone());
        let mut batch = db.batch().durability(Some(PersistMode::Buffer));
        for (key, value) in &chunk {
            if value.len() == 8 {
                continue; // converted by an earlier, interrupted upgrade
            }
            let at = keys::u64_at(value, 0, "format-1 journal value")?;
            let mut event = Vec::with_capacity(value.len() - 7);
            event.push(keys::POS_EVENT);
            event.extend_from_slice(&value[8..]);
            batch.insert(pos, at.to_be_bytes(), event);
            batch.insert(journal, key.as_slice(), at.to_be_bytes());
            converted += 1;
        }
        batch.commit().map_err(db_err)?;
        progress.at(converted);
    }
    db.persist(PersistMode::SyncAll).map_err(db_err)?;
    progress.done(converted);
    Ok(converted)
}

type Entry = (Vec<u8>, Vec<u8>);

/// Up to [`CHUNK`] journal entries after `after` (all from the start).
fn read_chunk(journal: &Keyspace, after: Option<&[u8]>) -> Result<Vec<Entry>, StoreError> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    journal
        .range::<&[u8], _>((start, Bound::Unbounded))
        .take(CHUNK)
        .map(|g| {
            let (k, v) = g.into_inner().map_err(db_err)?;
            Ok((k.to_vec(), v.to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::tests::{batch, rejection};
    use super::super::super::{keys, EmbeddedStore, FORMAT_VERSION};
    use super::super::v3::tests::to_format_2;
    use crate::store::{EventStore, GroupOutcome, JournalRecord, StoreError, StoredEvent};
    use chrono::NaiveDate;
    use fjall::PersistMode;

    /// What a reader sees: every record, a user's events, an event by id,
    /// a target's events, the most recent events.
    type Answers = (
        Vec<JournalRecord>,
        Vec<StoredEvent>,
        Option<StoredEvent>,
        Vec<StoredEvent>,
        Vec<StoredEvent>,
    );

    async fn answers(store: &EmbeddedStore) -> Answers {
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        (
            store.scan(0, usize::MAX).await.unwrap(),
            store.user_events("user-7", 0, 100).await.unwrap(),
            store.interaction("user-7-2").await.unwrap(),
            store.by_target("post-3", day, day, 100).await.unwrap(),
            store.recent(None, 40).await.unwrap(),
        )
    }

    /// Rewrites the store's events as format 1 wrote them (every `step`th
    /// one; the others stay converted, as an interrupted upgrade leaves
    /// them) and records format 1.
    fn to_format_1(store: &EmbeddedStore, step: usize) {
        to_format_2(store, 0);
        let s = &store.inner;
        let mut b = s.db.batch().durability(Some(PersistMode::SyncAll));
        for (i, g) in s.journal.iter().enumerate() {
            let (jk, at) = g.into_inner().unwrap();
            if i % step != 0 {
                continue;
            }
            let event = s.pos.get(&*at).unwrap().unwrap();
            assert_eq!(event[0], keys::POS_EVENT);
            let mut old_journal = at.to_vec();
            old_journal.extend_from_slice(&event[1..]);
            let mut old_pos = vec![keys::POS_EVENT];
            old_pos.extend_from_slice(&jk);
            b.insert(&s.journal, &*jk, old_journal);
            b.insert(&s.pos, &*at, old_pos);
        }
        b.insert(&s.meta, "format", 1u32.to_be_bytes());
        b.commit().unwrap();
    }

    async fn upgrade_case(step: usize) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut first = batch(0..50, 0, 3);
        first.rejections.push(rejection("cmd-1"));
        store.write(first.into()).await.unwrap();
        let before = answers(&store).await;
        assert_eq!(before.0.len(), 151);
        assert_eq!((before.1.len(), before.3.len()), (3, 50));
        assert!(before.2.is_some());
        to_format_1(&store, step);
        drop(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let format = store.inner.meta.get("format").unwrap().unwrap();
        assert_eq!(*format, FORMAT_VERSION.to_be_bytes());
        assert_eq!(answers(&store).await, before);
        // Appends go on where they stopped: next seqs, ids still taken.
        let out = store.write(batch(0..50, 3, 1).into()).await.unwrap();
        assert!(out
            .groups
            .iter()
            .all(|g| matches!(g, GroupOutcome::Appended { .. })));
        let again = store.write(batch(7..8, 3, 1).into()).await.unwrap();
        assert!(!matches!(again.groups[0], GroupOutcome::Appended { .. }));
        assert_eq!(store.scan(0, usize::MAX).await.unwrap().len(), 201);
        assert_eq!(store.user_events("user-7", 0, 100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_format_1_store_is_upgraded_and_reads_the_same() {
        upgrade_case(1).await;
    }

    /// An upgrade a crash interrupted: some events converted, format 1
    /// still recorded. The next open converts the rest.
    #[tokio::test]
    async fn an_interrupted_upgrade_is_finished_at_the_next_open() {
        upgrade_case(2).await;
    }

    #[tokio::test]
    async fn an_unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let meta = store.inner.meta.clone();
        meta.insert("format", 9u32.to_be_bytes()).unwrap();
        drop((store, meta));
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
