//! Upgrades a store written in format 2 to format 3, at open.
//!
//! Format 2 kept each record in the LSM's `pos` keyspace (`0x01 event` or
//! `0x02 rejection`) and made every index durable with each write. Format
//! 3 keeps the records in the journal's files and only their locations in
//! `pos` (see the parent module).
//!
//! The upgrade copies the records in position order, in chunks: a chunk's
//! frames are appended to the journal (fdatasync), then, in one fsynced
//! batch, its `pos` values become locations and `meta/upgraded_through`
//! records its last position. A crash midway loses nothing: the next open
//! cuts the journal back to the recorded progress (the copies beyond it
//! are of records `pos` still holds) and goes on from there. Format 2's
//! indexes were durable, so the upgraded store's indexes cover every
//! record (`meta/indexed`). The format key is written last, by the caller.

use super::super::index::INDEXED;
use super::super::journal::{Journal, Location, Pending};
use super::super::{db_err, keys};
use super::Progress;
use crate::store::StoreError;
use fjall::{Database, Keyspace, PersistMode};
use std::ops::Bound;

/// Records copied per chunk.
const CHUNK: usize = 4096;
/// The `meta` key of the upgrade's progress: the last position copied.
const PROGRESS: &str = "upgraded_through";
const WHAT: &str = "upgrading format 2 to 3 (the records move to the journal's files)";

/// Copies every format-2 record to the journal; returns the journal's
/// last position. Does not write the format key (the caller does).
pub(in super::super) fn v2_to_v3(
    db: &Database,
    pos: &Keyspace,
    meta: &Keyspace,
    journal: &Journal,
) -> Result<u64, StoreError> {
    let mut through = match meta.get(PROGRESS).map_err(db_err)? {
        Some(v) => keys::u64_at(&v, 0, "upgrade progress")?,
        None => 0,
    };
    let end = match through {
        0 => None,
        p => Some(location(pos, p)?),
    };
    journal.truncate_after(end)?;
    let mut progress = Progress::start(WHAT, pos.approximate_len() as u64);
    loop {
        let chunk = read_chunk(pos, through)?;
        if chunk.is_empty() {
            break;
        }
        let mut frames =
            Pending::with_capacity(chunk.iter().map(|(_, v)| v.len() + 16).sum(), chunk.len());
        for (p, v) in &chunk {
            if *p != through + 1 + frames_len(&frames) {
                return Err(StoreError::Corrupt(format!(
                    "format-2 record {p} where {} was expected",
                    through + 1 + frames_len(&frames)
                )));
            }
            let Some((&tag, payload)) = v.split_first() else {
                return Err(keys::corrupt("format-2 position value"));
            };
            if tag != keys::POS_EVENT && tag != keys::POS_REJECTION {
                return Err(keys::corrupt("format-2 position value"));
            }
            frames.push(*p, tag, |b| {
                b.extend_from_slice(payload);
                Ok(())
            })?;
        }
        let locations = journal.append(&frames, true)?;
        let mut b = db.batch().durability(Some(PersistMode::SyncAll));
        for ((p, _), loc) in chunk.iter().zip(&locations) {
            b.insert(pos, p.to_be_bytes(), loc.encode());
        }
        through = chunk.last().map_or(through, |(p, _)| *p);
        b.insert(meta, PROGRESS, through.to_be_bytes());
        b.commit().map_err(db_err)?;
        progress.at(through);
    }
    let mut b = db.batch().durability(Some(PersistMode::SyncAll));
    b.insert(meta, INDEXED, through.to_be_bytes());
    b.remove(meta, PROGRESS);
    b.remove(meta, "head");
    b.commit().map_err(db_err)?;
    progress.done(through);
    Ok(through)
}

fn frames_len(p: &Pending) -> u64 {
    p.len() as u64
}

/// The location of a record already copied.
fn location(pos: &Keyspace, p: u64) -> Result<Location, StoreError> {
    let v = pos
        .get(p.to_be_bytes())
        .map_err(db_err)?
        .ok_or_else(|| StoreError::Corrupt(format!("upgraded record {p} unknown")))?;
    Location::decode(&v).ok_or_else(|| keys::corrupt("upgraded position value"))
}

/// Up to [`CHUNK`] format-2 records after position `after`.
fn read_chunk(pos: &Keyspace, after: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    pos.range::<[u8; 8], _>((Bound::Excluded(after.to_be_bytes()), Bound::Unbounded))
        .take(CHUNK)
        .map(|g| {
            let (k, v) = g.into_inner().map_err(db_err)?;
            Ok((keys::u64_at(&k, 0, "position key")?, v.to_vec()))
        })
        .collect()
}

#[cfg(test)]
pub(in super::super) mod tests {
    use super::super::super::tests::{batch, rejection};
    use super::super::super::{keys, EmbeddedStore, FORMAT_VERSION};
    use super::{location, PROGRESS};
    use crate::store::{EventStore, GroupOutcome, JournalRecord};
    use fjall::PersistMode;

    /// Rewrites the store as format 2 kept it: each record after `keep`
    /// back in `pos`, format 2 recorded. With `keep` 0 the journal's files
    /// are emptied; above 0, the journal keeps every record (an upgrade
    /// interrupted after copying `keep` of them, and some beyond).
    pub(in super::super::super) fn to_format_2(store: &EmbeddedStore, keep: u64) {
        let s = &store.inner;
        // The index entries into the LSM first, where this rewrites them.
        s.persist_all().unwrap();
        let mut b = s.db.batch().durability(Some(PersistMode::SyncAll));
        for g in s.pos.iter() {
            let (k, v) = g.into_inner().unwrap();
            let p = keys::u64_at(&k, 0, "key").unwrap();
            if p <= keep {
                continue;
            }
            let loc = super::Location::decode(&v).unwrap();
            let f = s.records.read(p, loc).unwrap();
            // Format 2 knew only the named encoding of events.
            let old = match f.tag {
                keys::POS_EVENT_COMPACT => {
                    let ev = crate::domain::InteractionTracked::decode_compact(&f.payload).unwrap();
                    [vec![keys::POS_EVENT], ev.encode().unwrap()].concat()
                }
                tag => [vec![tag], f.payload].concat(),
            };
            b.insert(&s.pos, k, old);
        }
        b.insert(&s.meta, "format", 2u32.to_be_bytes());
        b.remove(&s.meta, super::INDEXED);
        if keep > 0 {
            b.insert(&s.meta, PROGRESS, keep.to_be_bytes());
        }
        b.commit().unwrap();
        if keep == 0 {
            s.records.truncate_after(None).unwrap();
        } else {
            location(&s.pos, keep).unwrap();
        }
    }

    async fn upgrade_case(keep: u64) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut first = batch(0..50, 0, 3);
        first.rejections.push(rejection("cmd-1"));
        store.write(first.into()).await.unwrap();
        store.write(batch(0..20, 3, 1).into()).await.unwrap();
        let before = store.scan(0, usize::MAX).await.unwrap();
        let user = store.user_events("user-7", 0, 100).await.unwrap();
        assert_eq!(before.len(), 171);
        to_format_2(&store, keep);
        drop(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let format = store.inner.meta.get("format").unwrap().unwrap();
        assert_eq!(*format, FORMAT_VERSION.to_be_bytes());
        assert!(store.inner.meta.get(PROGRESS).unwrap().is_none());
        assert_eq!(store.scan(0, usize::MAX).await.unwrap(), before);
        assert_eq!(store.user_events("user-7", 0, 100).await.unwrap(), user);
        assert_eq!(store.head().await.unwrap(), 171);
        let out = store.write(batch(0..5, 4, 1).into()).await.unwrap();
        assert!(out
            .groups
            .iter()
            .all(|g| matches!(g, GroupOutcome::Appended { first_pos, .. } if *first_pos > 171)));
        drop(store);
        // And once more: the upgraded store opens as format 3.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let all = store.scan(0, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 176);
        assert!(matches!(all.last(), Some(JournalRecord::Event(e)) if e.event.seq == 5));
    }

    #[tokio::test]
    async fn a_format_2_store_is_upgraded_and_reads_the_same() {
        upgrade_case(0).await;
    }

    /// A crash after 100 records were copied (the journal holds copies
    /// beyond them): the next open cuts those off and copies the rest.
    #[tokio::test]
    async fn an_interrupted_upgrade_to_format_3_is_finished_at_the_next_open() {
        upgrade_case(100).await;
    }
}
