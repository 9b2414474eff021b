//! The memory layer with the LSM behind it: reads that see both (an
//! entry held here first, else the keyspace's), and the checkpoint's
//! ingestion of the layer into the keyspaces.

use super::{Ix, Unsealed};
use crate::store::embedded::{db_err, Inner};
use crate::store::StoreError;
use fjall::{Keyspace, Slice};
use std::collections::VecDeque;
use std::ops::Bound;

impl Inner {
    pub(super) fn index_keyspace(&self, ix: Ix) -> &Keyspace {
        match ix {
            Ix::Pos => &self.pos,
            Ix::Journal => &self.journal,
            Ix::Ids => &self.ids,
            Ix::Target => &self.target,
            Ix::LastSeq => &self.last_seq,
            Ix::Daily => &self.daily,
            Ix::Status => &self.status,
            Ix::Users => &self.users,
        }
    }

    /// Ingests every entry written before this call into the LSM (the
    /// caller holds the `indexing` lock), the journal synced first: first
    /// what a failed ingestion left sealed, then everything else. An ingestion flushes the
    /// keyspace's memtable first and registers its table as newer than
    /// every version before it (lsm-tree's `Ingestion::finish`), so an
    /// ingested value also replaces an older one of the same key.
    pub(in crate::store::embedded) fn ingest_pending(&self) -> Result<(), StoreError> {
        let rounds = if self.pending.has_sealed() { 2 } else { 1 };
        let mut scratch = self
            .pending
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for _ in 0..rounds {
            let Some(maps) = self.pending.seal() else {
                return Ok(());
            };
            // Every record these entries derive from was written before
            // they were staged: durable now, before any entry of theirs
            // (ingested tables are synced as they are written).
            self.sync_journal()?;
            for ix in Ix::ALL {
                if maps.is_empty(ix) {
                    continue;
                }
                let mut ingestion = self.index_keyspace(ix).start_ingestion().map_err(db_err)?;
                maps.for_each_sorted(ix, &mut scratch, |k, v| {
                    ingestion
                        .write(Slice::from(k), Slice::from(v))
                        .map_err(db_err)
                })?;
                ingestion.finish().map_err(db_err)?;
            }
            drop(maps);
            self.pending.release();
        }
        Ok(())
    }

    /// Ingests the entries held unsealed if there are more than
    /// [`MAX_UNSEALED`], or they take more than [`MAX_UNSEALED_BYTES`]
    /// (checkpoints failing or behind, or a long derivation at open):
    /// memory stays bounded whatever the rate.
    pub(in crate::store::embedded) fn ingest_if_over(
        &self,
        unsealed: Unsealed,
    ) -> Result<(), StoreError> {
        if !unsealed.over() {
            return Ok(());
        }
        let _one = self.indexing.lock().unwrap_or_else(|e| e.into_inner());
        self.ingest_pending()
    }

    /// The value of `key` in index `ix`: held here, else in the LSM.
    pub(in crate::store::embedded) fn index_get(
        &self,
        ix: Ix,
        key: &[u8],
    ) -> Result<Option<Slice>, StoreError> {
        if let Some(v) = self.pending.get(ix, key) {
            return Ok(Some(v));
        }
        self.index_keyspace(ix).get(key).map_err(db_err)
    }

    /// The entries of index `ix` in a key range, from here and the LSM
    /// merged (one per key), ascending or, with `rev`, descending. Of
    /// `pos`, only the first `limit` held in memory (the last, with `rev`)
    /// are read: a caller that skips entries passes `usize::MAX`.
    pub(in crate::store::embedded) fn index_range<'a>(
        &'a self,
        ix: Ix,
        (from, to): (Bound<&[u8]>, Bound<&[u8]>),
        rev: bool,
        limit: usize,
    ) -> impl Iterator<Item = Result<(Slice, Slice), StoreError>> + 'a {
        // Here first: an entry ingested meanwhile is then found twice (and
        // kept once, memory's), never missed.
        let mut mem: VecDeque<(Slice, Slice)> =
            self.pending.range(ix, (from, to), (rev, limit)).into();
        let bounds = (from.map(Slice::from), to.map(Slice::from));
        let lsm = self.index_keyspace(ix).range(bounds);
        let mut lsm: Box<dyn Iterator<Item = fjall::Guard> + 'a> = if rev {
            Box::new(lsm.rev())
        } else {
            Box::new(lsm)
        };
        let mut next_lsm: Option<Result<(Slice, Slice), StoreError>> = None;
        let mut lsm_done = false;
        std::iter::from_fn(move || {
            if next_lsm.is_none() && !lsm_done {
                next_lsm = lsm.next().map(|g| g.into_inner().map_err(db_err));
                lsm_done = next_lsm.is_none();
            }
            let from_mem = if rev { mem.back() } else { mem.front() };
            match (&next_lsm, from_mem) {
                (None, None) => None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => next_lsm.take(),
                (None, Some(_)) => pop(&mut mem, rev).map(Ok),
                (Some(Ok((lk, _))), Some((mk, _))) => {
                    let mem_first = if rev { mk >= lk } else { mk <= lk };
                    if mem_first {
                        // Of a key in both, memory's value is the newer
                        // one (a row replaced since the LSM got it).
                        if mk == lk {
                            next_lsm = None;
                        }
                        pop(&mut mem, rev).map(Ok)
                    } else {
                        next_lsm.take()
                    }
                }
            }
        })
    }
}

fn pop(mem: &mut VecDeque<(Slice, Slice)>, rev: bool) -> Option<(Slice, Slice)> {
    if rev {
        mem.pop_back()
    } else {
        mem.pop_front()
    }
}
