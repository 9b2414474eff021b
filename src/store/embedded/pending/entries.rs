//! The shapes the entries of each write-once index are held in until a
//! checkpoint ingests them, chosen by the reads each index serves.
//!
//! An index's keys and values are copied into one buffer of its own
//! ([`Entries::insert`]) and its maps hold spans of it, not a heap slice
//! per key and value: a checkpoint's entries (four or more per event) are
//! then no allocation each when written, no reference count touched when
//! sorted and no free (on another thread than the allocation's) when
//! dropped, only one buffer. A key put again leaves its old bytes in the
//! buffer until the layer is dropped; [`super::Maps`] counts the bytes of
//! every put, so the bound on the memory layer holds them too.

use super::Ix;
use fjall::Slice;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::ops::{Bound, RangeBounds};

/// The most entries a map is given room for before they come: a
/// checkpoint's worth (2 s) at 65,000 events/s. Past a burst (a
/// derivation at open ingests up to `MAX_UNSEALED` at once) the next maps
/// stay small.
const PRESIZE_MAX: usize = 1 << 17;

/// The most bytes a buffer is given room for before they come (a
/// checkpoint's keys and values of one index at about 65,000 events/s).
const PRESIZE_BYTES_MAX: usize = 8 << 20;

/// Where one entry's key and value are in the buffer: the key at `at`,
/// the value right after it.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: usize,
    key: usize,
    value: usize,
}

/// A group of the grouped shape: its entries in ascending key order, and
/// its string the first `prefix` bytes of its first entry's key.
struct Group {
    prefix: usize,
    entries: Vec<Span>,
}

/// The maps of one index, over spans of its buffer.
enum Shape {
    /// `pos`: keys come in ascending order (positions), so a sorted vector
    /// answers points and ranges by binary search.
    Ordered(Vec<Span>),
    /// `ids`, `last_seq` and the projections: point lookups (the
    /// projections' rare range reads scan them).
    Points(HashTable<Span>),
    /// `journal` and `target`: keys start with a length-prefixed string
    /// (the user, the target id) and every range read stays within one,
    /// so entries are grouped by it, each group's in key order
    /// ([`put_sorted`]), and the groups sorted together only when ingested.
    Grouped(HashTable<Group>),
}

/// One index's entries, in the shape its reads need.
pub(super) struct Entries {
    bytes: Vec<u8>,
    shape: Shape,
    /// Seeded per map, as [`crate::hash::Map`]'s.
    hasher: RandomState,
}

/// The length-prefixed string a `journal` or `target` key starts with.
fn group_of(key: &[u8]) -> &[u8] {
    let n = match key {
        [a, b, ..] => 2 + usize::from(u16::from_be_bytes([*a, *b])),
        _ => key.len(),
    };
    &key[..n.min(key.len())]
}

fn bound_key<'a>(b: &Bound<&'a [u8]>) -> Option<&'a [u8]> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}

fn in_range(key: &[u8], from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    RangeBounds::<[u8]>::contains(&(from, to), key)
}

/// A key's first 16 bytes as a big-endian number, zero-padded: keys in
/// this order are in byte order, except that keys with equal prefixes
/// (one possibly a prefix of the other) must be compared whole.
fn key_prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

/// A group's string: the first `prefix` bytes of its first entry's key
/// (a group is never empty).
fn group_prefix<'a>(bytes: &'a [u8], g: &Group) -> &'a [u8] {
    let first = &g.entries[0];
    &bytes[first.at..first.at + g.prefix]
}

/// An owned copy of an entry, as readers and the LSM take it.
fn owned((k, v): (&[u8], &[u8])) -> (Slice, Slice) {
    (Slice::from(k), Slice::from(v))
}

/// Puts `span`, whose key is `k`, in `spans`, which are in ascending key
/// order and stay so; returns whether the key is new. Keys mostly come in
/// order (positions; within a group, a user's seqs and a target's
/// positions), so an insert is mostly a push after one comparison, and
/// otherwise a binary search: a group that grows large (a hot user or
/// target) costs no walk over its entries per insert.
fn put_sorted<'a>(
    spans: &mut Vec<Span>,
    key_of: impl Fn(&Span) -> &'a [u8],
    k: &[u8],
    span: Span,
) -> bool {
    if spans.last().is_none_or(|last| key_of(last) < k) {
        spans.push(span);
        return true;
    }
    match spans.binary_search_by(|e| key_of(e).cmp(k)) {
        Ok(i) => {
            spans[i] = span;
            false
        }
        Err(i) => {
            spans.insert(i, span);
            true
        }
    }
}

impl Entries {
    pub(super) fn new(ix: Ix) -> Entries {
        let shape = match ix {
            Ix::Pos => Shape::Ordered(Vec::new()),
            Ix::Ids | Ix::LastSeq | Ix::Daily | Ix::Status | Ix::Users => {
                Shape::Points(HashTable::new())
            }
            Ix::Journal | Ix::Target => Shape::Grouped(HashTable::new()),
        };
        Entries {
            bytes: Vec::new(),
            shape,
            hasher: RandomState::default(),
        }
    }

    /// Empty, with room for as many entries (and groups) and bytes as
    /// `like` holds, up to [`PRESIZE_MAX`] and [`PRESIZE_BYTES_MAX`]: the
    /// entries of the next checkpoint are about as many as this one's, and a
    /// map grown from empty rehashes all of them a dozen times on the way.
    pub(super) fn sized_like(like: &Entries) -> Entries {
        let room = |n: usize| n.min(PRESIZE_MAX);
        let shape = match &like.shape {
            Shape::Ordered(v) => Shape::Ordered(Vec::with_capacity(room(v.len()))),
            Shape::Points(m) => Shape::Points(HashTable::with_capacity(room(m.len()))),
            Shape::Grouped(m) => Shape::Grouped(HashTable::with_capacity(room(m.len()))),
        };
        Entries {
            bytes: Vec::with_capacity(like.bytes.len().min(PRESIZE_BYTES_MAX)),
            shape,
            hasher: RandomState::default(),
        }
    }

    fn key(&self, s: &Span) -> &[u8] {
        &self.bytes[s.at..s.at + s.key]
    }

    fn value(&self, s: &Span) -> &[u8] {
        let at = s.at + s.key;
        &self.bytes[at..at + s.value]
    }

    fn entry(&self, s: &Span) -> (&[u8], &[u8]) {
        (self.key(s), self.value(s))
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// Puts an entry in place of the key's; returns whether the key is new
    /// (the count of entries grew).
    pub(super) fn insert(&mut self, k: &[u8], v: &[u8]) -> bool {
        let span = Span {
            at: self.bytes.len(),
            key: k.len(),
            value: v.len(),
        };
        let hash = match self.shape {
            Shape::Ordered(_) => 0,
            Shape::Points(_) => self.hash(k),
            Shape::Grouped(_) => self.hash(group_of(k)),
        };
        self.bytes.extend_from_slice(k);
        self.bytes.extend_from_slice(v);
        let Entries {
            bytes,
            shape,
            hasher,
        } = self;
        let key_of = |s: &Span| &bytes[s.at..s.at + s.key];
        match shape {
            Shape::Ordered(spans) => put_sorted(spans, key_of, k, span),
            Shape::Points(table) => {
                let rehash = |s: &Span| hasher.hash_one(key_of(s));
                match table.find_mut(hash, |e| key_of(e) == k) {
                    Some(e) => {
                        *e = span;
                        false
                    }
                    None => {
                        table.insert_unique(hash, span, rehash);
                        true
                    }
                }
            }
            Shape::Grouped(table) => {
                let group = group_of(k);
                let rehash = |g: &Group| hasher.hash_one(group_prefix(bytes, g));
                match table.find_mut(hash, |g| group_prefix(bytes, g) == group) {
                    Some(g) => put_sorted(&mut g.entries, key_of, k, span),
                    None => {
                        let g = Group {
                            prefix: group.len(),
                            entries: vec![span],
                        };
                        table.insert_unique(hash, g, rehash);
                        true
                    }
                }
            }
        }
    }

    fn group(&self, prefix: &[u8]) -> Option<&Group> {
        match &self.shape {
            Shape::Grouped(table) => table.find(self.hash(prefix), |g| {
                group_prefix(&self.bytes, g) == prefix
            }),
            Shape::Ordered(_) | Shape::Points(_) => None,
        }
    }

    /// The largest key of a group's entries (they are in key order).
    fn largest_key(&self, g: &Group) -> Option<&[u8]> {
        g.entries.last().map(|e| self.key(e))
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<Slice> {
        let span = match &self.shape {
            Shape::Ordered(spans) => spans
                .binary_search_by(|e| self.key(e).cmp(key))
                .ok()
                .map(|i| &spans[i]),
            Shape::Points(table) => table.find(self.hash(key), |e| self.key(e) == key),
            Shape::Grouped(_) => self.group(group_of(key)).and_then(|g| {
                g.entries
                    .binary_search_by(|e| self.key(e).cmp(key))
                    .ok()
                    .map(|i| &g.entries[i])
            }),
        };
        span.map(|s| Slice::from(self.value(s)))
    }

    /// The largest key of the group `prefix` names (a `journal` group's
    /// is its user's last seq); `None` for the other shapes.
    pub(super) fn last_in_group(&self, prefix: &[u8]) -> Option<&[u8]> {
        self.largest_key(self.group(prefix)?)
    }

    /// The largest key of every group, in no particular order.
    pub(super) fn group_lasts(&self) -> Vec<&[u8]> {
        match &self.shape {
            Shape::Grouped(table) => table.iter().filter_map(|g| self.largest_key(g)).collect(),
            Shape::Ordered(_) | Shape::Points(_) => Vec::new(),
        }
    }

    /// Appends the entries in the range to `out`, in no particular order:
    /// of `pos`, only the first `limit` (the last, with `rev`).
    pub(super) fn range_into(
        &self,
        (from, to): (Bound<&[u8]>, Bound<&[u8]>),
        (rev, limit): (bool, usize),
        out: &mut Vec<(Slice, Slice)>,
    ) {
        let pick = |s: &Span| {
            let (k, v) = self.entry(s);
            in_range(k, from, to).then(|| owned((k, v)))
        };
        match &self.shape {
            Shape::Ordered(spans) => {
                let first = spans.partition_point(|s| {
                    let k = self.key(s);
                    match from {
                        Bound::Included(f) => k < f,
                        Bound::Excluded(f) => k <= f,
                        Bound::Unbounded => false,
                    }
                });
                let rest = &spans[first..];
                let end = rest.partition_point(|s| in_range(self.key(s), Bound::Unbounded, to));
                let found = &rest[..end];
                let n = found.len().min(limit);
                let picked = if rev {
                    &found[found.len() - n..]
                } else {
                    &found[..n]
                };
                out.extend(picked.iter().map(|s| owned(self.entry(s))));
            }
            Shape::Points(table) => out.extend(table.iter().filter_map(pick)),
            Shape::Grouped(table) => {
                let one = bound_key(&from)
                    .zip(bound_key(&to))
                    .filter(|(f, t)| group_of(f) == group_of(t))
                    .map(|(f, _)| group_of(f));
                match one {
                    Some(g) => {
                        let group = self.group(g).map(|g| &g.entries[..]).unwrap_or_default();
                        out.extend(group.iter().filter_map(pick));
                    }
                    None => out.extend(table.iter().flat_map(|g| &g.entries).filter_map(pick)),
                }
            }
        }
    }

    /// Every entry, in ascending key order (one per key: a key put again
    /// replaces its entry), as owned slices.
    #[cfg(test)]
    pub(super) fn sorted(&self) -> Vec<(Slice, Slice)> {
        let mut out = Vec::new();
        let collect = |k: &[u8], v: &[u8]| {
            out.push(owned((k, v)));
            Ok::<(), std::convert::Infallible>(())
        };
        self.for_each_sorted(&mut SortScratch::default(), collect)
            .unwrap_or_else(|never| match never {});
        out
    }

    /// Calls `f` with every entry, in ascending key order (one per key),
    /// until it fails: what a checkpoint writes into the LSM, one entry at
    /// a time (no second copy of a checkpoint's entries).
    ///
    /// The hashed shapes are sorted on each key's first 16 bytes, read
    /// once ([`key_prefix`]), and the whole keys only where those are
    /// equal: a checkpoint sorts its entries, and comparing whole
    /// keys at every step reads each key's bytes again (a cache miss).
    pub(super) fn for_each_sorted<E>(
        &self,
        scratch: &mut SortScratch,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let spans = &mut scratch.0;
        spans.clear();
        match &self.shape {
            Shape::Ordered(ordered) => {
                return ordered
                    .iter()
                    .try_for_each(|s| f(self.key(s), self.value(s)));
            }
            Shape::Points(table) => {
                spans.extend(table.iter().map(|s| (key_prefix(self.key(s)), *s)));
            }
            Shape::Grouped(table) => spans.extend(
                table
                    .iter()
                    .flat_map(|g| &g.entries)
                    .map(|s| (key_prefix(self.key(s)), *s)),
            ),
        }
        spans.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.key(&a.1).cmp(self.key(&b.1)))
        });
        let done = spans
            .iter()
            .try_for_each(|(_, s)| f(self.key(s), self.value(s)));
        // Past a burst (a derivation at open), not kept at its size.
        if spans.capacity() > 2 * PRESIZE_MAX {
            *spans = Vec::new();
        }
        done
    }

    pub(super) fn is_empty(&self) -> bool {
        match &self.shape {
            Shape::Ordered(spans) => spans.is_empty(),
            Shape::Points(table) => table.is_empty(),
            Shape::Grouped(table) => table.is_empty(),
        }
    }

    /// Empties the maps and the buffer, keeping the memory they have:
    /// the next checkpoint's entries go into it without the allocator
    /// handing back fresh pages (a page fault each, zeroed).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        match &mut self.shape {
            Shape::Ordered(spans) => spans.clear(),
            Shape::Points(table) => table.clear(),
            Shape::Grouped(table) => table.clear(),
        }
    }

    /// Whether the memory kept is more than a checkpoint's worth at the rate
    /// [`Entries::sized_like`] presizes for (after a burst: a derivation
    /// at open): then it is not worth keeping.
    pub(super) fn oversized(&self) -> bool {
        let entries = match &self.shape {
            Shape::Ordered(spans) => spans.capacity(),
            Shape::Points(table) => table.capacity(),
            Shape::Grouped(table) => table.capacity(),
        };
        entries > 2 * PRESIZE_MAX || self.bytes.capacity() > 2 * PRESIZE_BYTES_MAX
    }
}

/// The vector a checkpoint sorts an index's entries in, kept from one
/// checkpoint to the next (see [`Entries::clear`]).
#[derive(Default)]
pub(super) struct SortScratch(Vec<(u128, Span)>);

/// Sorts entries by key and keeps one per key: of equal ones, the last in
/// `out` (the stable sort keeps their order; reversed first, the last put
/// comes first and `dedup` keeps it).
pub(super) fn sort_dedup(out: &mut Vec<(Slice, Slice)>) {
    out.reverse();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, first| later.0 == first.0);
}
