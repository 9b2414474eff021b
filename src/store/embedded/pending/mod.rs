//! Index entries and projection rows not yet in the LSM.
//!
//! The write-once indexes (`pos`, `journal`, `ids`, `target`: every key
//! is written once, with a value that never changes), the users' last
//! seqs (`last_seq`: a user's value replaced by each write) and the
//! projections' rows and checkpoints (replaced by each apply) do not go
//! through the LSM's memtables. A write puts their entries here, in
//! memory (each index's keys and values in one buffer of its own, with a
//! sorted vector over it for positions, which come in order, and hash
//! tables for the others, see [`entries`]; the last seqs are derived from
//! the `journal` entries, see [`Ix::LastSeq`]); each index checkpoint
//! ([`super::index`]) seals them, sorts them and ingests them into the
//! LSM as tables (fjall's bulk ingestion: no skip list, no LSM journal,
//! one entry at a time from the layer), then empties them and keeps their
//! memory for the next checkpoint's. A memtable insert is a walk down a
//! skip list of a few MiB with random keys, a cache miss per level; a
//! hash table insert is one or two, and the sort runs once per checkpoint
//! over its entries. Memory stays bounded: past [`MAX_UNSEALED`] entries,
//! or [`MAX_UNSEALED_BYTES`] (a row put again leaves its old bytes in its
//! index's buffer), a write ingests them itself.
//!
//! Readers look here first, then in the LSM: an entry leaves this layer
//! only after the LSM holds it, so a reader that misses it here finds it
//! there. A reader may meet an entry in both (read here, then ingested
//! before its LSM read): range reads merge the two and keep one.
//! Durability does not change: these entries were never synced by
//! themselves; the journal is, and what a crash loses of them is derived
//! again at open (the checkpoint records the head only after ingesting).

mod entries;
mod lsm;

use super::keys;
use entries::{sort_dedup, Entries, SortScratch};
use fjall::Slice;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The indexes kept here until a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ix {
    Pos = 0,
    Journal = 1,
    Ids = 2,
    Target = 3,
    /// Not write-once: a user's entry is replaced by each of its writes.
    /// Never put here: derived from the `journal` entries held (a user's
    /// largest seq), for reads and for ingestion, which makes its table
    /// the newest version of every key it holds (see
    /// [`Inner::ingest_pending`]). One map insert less per write and user.
    LastSeq = 4,
    /// The projections' rows and checkpoints (`p_daily`, `p_status`,
    /// `p_users`): replaced by each apply, like the last seqs. An apply
    /// puts its rows and its checkpoint in one commit, so a seal holds
    /// whole applies, and a keyspace's ingestion registers its tables at
    /// once: the durable rows and checkpoint always go together.
    Daily = 5,
    Status = 6,
    Users = 7,
}

impl Ix {
    pub(super) const ALL: [Ix; 8] = [
        Ix::Pos,
        Ix::Journal,
        Ix::Ids,
        Ix::Target,
        Ix::LastSeq,
        Ix::Daily,
        Ix::Status,
        Ix::Users,
    ];
}

/// One set of entries per index, how many they are, and the memory they
/// hold (estimated).
pub(super) struct Maps {
    maps: [Entries; 8],
    /// Entries in all maps: counted as they are put, since a count over
    /// the grouped maps walks every group (tens of thousands a second,
    /// once per commit).
    len: usize,
    bytes: usize,
}

impl Default for Maps {
    fn default() -> Maps {
        Maps {
            maps: Ix::ALL.map(Entries::new),
            len: 0,
            bytes: 0,
        }
    }
}

/// An entry's memory besides its key and value: its share of the map or
/// vector (a span of the index's buffer).
const ENTRY_OVERHEAD: usize = 64;

impl Maps {
    /// What this layer holds, as counted against the bounds.
    fn unsealed(&self) -> Unsealed {
        Unsealed {
            entries: self.len,
            bytes: self.bytes,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Empty maps with room for as many entries as `like`'s.
    fn sized_like(like: &Maps) -> Maps {
        Maps {
            maps: std::array::from_fn(|i| Entries::sized_like(&like.maps[i])),
            len: 0,
            bytes: 0,
        }
    }

    fn map(&self, ix: Ix) -> &Entries {
        &self.maps[ix as usize]
    }

    /// The value of `key` in index `ix`, if held here.
    fn get(&self, ix: Ix, key: &[u8]) -> Option<Slice> {
        match ix {
            Ix::LastSeq => self.last_seq(key),
            _ => self.map(ix).get(key),
        }
    }

    /// Appends the entries of index `ix` in the range to `out` (see
    /// [`Entries::range_into`]).
    fn range_into(
        &self,
        ix: Ix,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        read: (bool, usize),
        out: &mut Vec<(Slice, Slice)>,
    ) {
        match ix {
            Ix::LastSeq => out.extend(
                self.last_seqs()
                    .into_iter()
                    .filter(|(k, _)| std::ops::RangeBounds::<[u8]>::contains(&range, k.as_ref())),
            ),
            _ => self.map(ix).range_into(range, read, out),
        }
    }

    fn is_empty(&self, ix: Ix) -> bool {
        match ix {
            Ix::LastSeq => self.map(Ix::Journal).is_empty(),
            _ => self.map(ix).is_empty(),
        }
    }

    /// Calls `f` with every entry of index `ix`, in key order, until it
    /// fails (see [`Entries::for_each_sorted`]).
    fn for_each_sorted<E>(
        &self,
        ix: Ix,
        scratch: &mut SortScratch,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        match ix {
            Ix::LastSeq => self
                .last_seqs()
                .iter()
                .try_for_each(|(k, v)| f(k.as_ref(), v.as_ref())),
            _ => self.map(ix).for_each_sorted(scratch, f),
        }
    }

    /// Empties every map, keeping its memory (see [`Entries::clear`]),
    /// unless a burst made some larger than worth keeping: `None` then.
    fn recycled(mut self) -> Option<Maps> {
        if self.maps.iter().any(Entries::oversized) {
            return None;
        }
        self.maps.iter_mut().for_each(Entries::clear);
        self.len = 0;
        self.bytes = 0;
        Some(self)
    }

    /// A user's entry of the `last_seq` index, derived: the seq of its
    /// largest `journal` key held here (a user's seqs only grow).
    fn last_seq(&self, user: &[u8]) -> Option<Slice> {
        let mut group = Vec::with_capacity(2 + user.len());
        keys::put_str(&mut group, std::str::from_utf8(user).ok()?).ok()?;
        let key = self.map(Ix::Journal).last_in_group(&group)?;
        key.get(group.len()..).map(Slice::from)
    }

    /// Every user's derived `last_seq` entry (see [`Self::last_seq`]), in
    /// key order.
    fn last_seqs(&self) -> Vec<(Slice, Slice)> {
        let mut out: Vec<(Slice, Slice)> = self
            .map(Ix::Journal)
            .group_lasts()
            .into_iter()
            .filter_map(|k| {
                let (user, seq) = keys::take_str(k, "journal key").ok()?;
                Some((Slice::from(user.as_bytes()), Slice::from(seq)))
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Entries of one write, put in place under one lock: their keys and
/// values in one buffer, copied into the indexes' own at the commit.
#[derive(Default)]
pub(super) struct Staged {
    bytes: Vec<u8>,
    /// Index, key length, value length, in the buffer's order.
    puts: Vec<(Ix, usize, usize)>,
}

/// The bytes an entry is expected to take, for [`Staged::with_capacity`].
const STAGED_ENTRY_BYTES: usize = 40;

impl Staged {
    pub(super) fn with_capacity(n: usize) -> Staged {
        Staged {
            bytes: Vec::with_capacity(n * STAGED_ENTRY_BYTES),
            puts: Vec::with_capacity(n),
        }
    }

    pub(super) fn put(&mut self, ix: Ix, key: &[u8], value: &[u8]) {
        debug_assert_ne!(ix, Ix::LastSeq, "last seqs are derived, never put");
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.puts.push((ix, key.len(), value.len()));
    }

    /// Each entry: its index, key and value.
    fn entries(&self) -> impl Iterator<Item = (Ix, &[u8], &[u8])> {
        let mut at = 0;
        self.puts.iter().map(move |&(ix, k, v)| {
            let (key, value) = self.bytes[at..at + k + v].split_at(k);
            at += k + v;
            (ix, key, value)
        })
    }
}

#[derive(Default)]
struct Layers {
    /// Written since the last seal.
    active: Maps,
    /// Sealed by a checkpoint, read until the LSM holds it (kept after a
    /// failed ingestion, and ingested again by the next checkpoint).
    sealed: Option<Arc<Maps>>,
    /// The maps of the last layer ingested, emptied with their memory
    /// kept: the next seal's new active layer (see [`Entries::clear`]).
    spare: Option<Maps>,
}

/// The entries written since the last checkpoint's ingestion.
#[derive(Default)]
pub(super) struct Pending {
    layers: RwLock<Layers>,
    /// The vector a checkpoint sorts in, kept with its memory (one
    /// checkpoint at a time: the caller holds the `indexing` lock).
    scratch: Mutex<SortScratch>,
}

impl Pending {
    /// A panic under the lock leaves whole maps (each change is one insert
    /// or one swap): a poisoned lock is taken over.
    fn read(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a write's entries in place; returns what is now held
    /// unsealed.
    pub(super) fn commit(&self, staged: Staged) -> Unsealed {
        let mut layers = self.write();
        let active = &mut layers.active;
        for (ix, k, v) in staged.entries() {
            active.bytes += k.len() + v.len() + ENTRY_OVERHEAD;
            if active.maps[ix as usize].insert(k, v) {
                active.len += 1;
            }
        }
        active.unsealed()
    }

    /// The value of `key`, if it is held here.
    pub(super) fn get(&self, ix: Ix, key: &[u8]) -> Option<Slice> {
        let layers = self.read();
        layers
            .active
            .get(ix, key)
            .or_else(|| layers.sealed.as_ref().and_then(|s| s.get(ix, key)))
    }

    /// The entries held here in a key range, in key order; of `pos`, at
    /// least the first `limit` (the last, with `rev`) if there are as many.
    pub(super) fn range(
        &self,
        ix: Ix,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        read: (bool, usize),
    ) -> Vec<(Slice, Slice)> {
        let layers = self.read();
        let mut out = Vec::new();
        // Sealed first: an entry put again since (same key) comes after it.
        if let Some(s) = &layers.sealed {
            s.range_into(ix, range, read, &mut out);
        }
        layers.active.range_into(ix, range, read, &mut out);
        sort_dedup(&mut out);
        out
    }

    /// The maps a checkpoint ingests: the ones a failed ingestion left
    /// sealed, or else everything written so far (sealed now).
    fn seal(&self) -> Option<Arc<Maps>> {
        let mut layers = self.write();
        if layers.sealed.is_none() && layers.active.len() > 0 {
            let next = match layers.spare.take() {
                Some(spare) => spare,
                None => Maps::sized_like(&layers.active),
            };
            let active = std::mem::replace(&mut layers.active, next);
            layers.sealed = Some(Arc::new(active));
        }
        layers.sealed.clone()
    }

    /// Drops the sealed maps once the LSM holds them, and keeps them
    /// emptied as the next seal's (the caller dropped its own reference:
    /// a reader still holding one leaves them to be freed).
    fn release(&self) {
        let sealed = self.write().sealed.take();
        if let Some(spare) = sealed
            .and_then(|s| Arc::try_unwrap(s).ok())
            .and_then(Maps::recycled)
        {
            self.write().spare = Some(spare);
        }
    }

    fn has_sealed(&self) -> bool {
        self.read().sealed.is_some()
    }

    /// What is held unsealed now.
    pub(in crate::store::embedded) fn unsealed(&self) -> Unsealed {
        self.read().active.unsealed()
    }

    /// The memory the entries held here take (estimated).
    pub(super) fn bytes(&self) -> usize {
        let layers = self.read();
        layers.active.bytes + layers.sealed.as_ref().map_or(0, |s| s.bytes)
    }
}

/// Entries held unsealed past which they are ingested at once: about
/// two seconds' worth at 85,000 events/s (six entries per event: four
/// index entries, the user's stats row and a daily member). The index
/// checkpoint starts at half of it ([`Unsealed::half_full`]), so a write
/// meets it only when checkpoints fail or fall behind.
const MAX_UNSEALED: usize = 1 << 20;

/// The bytes held unsealed (estimated, every put counted: see
/// [`entries`]) past which they are ingested at once: about what
/// [`MAX_UNSEALED`] entries take, reached first when rows put again and
/// again leave their old bytes behind.
const MAX_UNSEALED_BYTES: usize = 128 << 20;

/// What the memory layer holds unsealed (after a commit, or now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unsealed {
    /// Distinct keys.
    pub(super) entries: usize,
    /// Every put's key, value and overhead.
    pub(super) bytes: usize,
}

impl Unsealed {
    /// Past either bound: to be ingested now.
    fn over(self) -> bool {
        self.entries > MAX_UNSEALED || self.bytes > MAX_UNSEALED_BYTES
    }

    /// Past half of either bound: time for a checkpoint.
    pub(in crate::store::embedded) fn half_full(self) -> bool {
        self.entries > MAX_UNSEALED / 2 || self.bytes > MAX_UNSEALED_BYTES / 2
    }
}

#[cfg(test)]
mod tests;
