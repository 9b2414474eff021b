//! The shapes the entries of each write-once index are held in until a
//! checkpoint ingests them, chosen by the reads each index serves.

use super::Ix;
use crate::hash::Map;
use fjall::Slice;
use std::ops::{Bound, RangeBounds};

/// The most entries a map is given room for before they come: a second's
/// worth at 65,000 events/s. Past a burst (a derivation at open ingests
/// up to `MAX_UNSEALED` at once) the next maps stay small.
const PRESIZE_MAX: usize = 1 << 16;

/// One index's entries, in the shape its reads need.
pub(super) enum Entries {
    /// `pos`: keys come in ascending order (positions), so a sorted vector
    /// answers points and ranges by binary search.
    Ordered(Vec<(Slice, Slice)>),
    /// `ids`, `last_seq` and the projections: point lookups (the
    /// projections' rare range reads scan them).
    Points(Map<Slice, Slice>),
    /// `journal` and `target`: keys start with a length-prefixed string
    /// (the user, the target id) and every range read stays within one,
    /// so entries are grouped by it and sorted only when read or ingested.
    Grouped(Map<Box<[u8]>, Vec<(Slice, Slice)>>),
}

/// The length-prefixed string a `journal` or `target` key starts with.
fn group_of(key: &[u8]) -> &[u8] {
    let n = match key {
        [a, b, ..] => 2 + usize::from(u16::from_be_bytes([*a, *b])),
        _ => key.len(),
    };
    &key[..n.min(key.len())]
}

/// The largest key of a group's entries.
fn last_key(group: &[(Slice, Slice)]) -> Option<&Slice> {
    group.iter().map(|(k, _)| k).max()
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

impl Entries {
    pub(super) fn new(ix: Ix) -> Entries {
        match ix {
            Ix::Pos => Entries::Ordered(Vec::new()),
            Ix::Ids | Ix::LastSeq | Ix::Daily | Ix::Status | Ix::Users => {
                Entries::Points(Map::default())
            }
            Ix::Journal | Ix::Target => Entries::Grouped(Map::default()),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Entries::Ordered(v) => v.len(),
            Entries::Points(m) => m.len(),
            Entries::Grouped(m) => m.values().map(Vec::len).sum(),
        }
    }

    /// Empty, with room for as many entries (and groups) as `like` holds,
    /// up to [`PRESIZE_MAX`]: the entries of the next second are about as
    /// many as this one's, and a map grown from empty rehashes all of them
    /// a dozen times on the way.
    pub(super) fn sized_like(like: &Entries) -> Entries {
        let room = |n: usize| n.min(PRESIZE_MAX);
        match like {
            Entries::Ordered(v) => Entries::Ordered(Vec::with_capacity(room(v.len()))),
            Entries::Points(m) => Entries::Points(Map::with_capacity_and_hasher(
                room(m.len()),
                Default::default(),
            )),
            Entries::Grouped(m) => Entries::Grouped(Map::with_capacity_and_hasher(
                room(m.len()),
                Default::default(),
            )),
        }
    }

    /// Puts an entry in place of the key's; returns whether the key is new
    /// (the count of entries grew).
    pub(super) fn insert(&mut self, k: Slice, v: Slice) -> bool {
        match self {
            Entries::Ordered(entries) => match entries.last() {
                Some((last, _)) if *last >= k => {
                    match entries.binary_search_by(|(e, _)| e.cmp(&k)) {
                        Ok(i) => {
                            entries[i].1 = v;
                            false
                        }
                        Err(i) => {
                            entries.insert(i, (k, v));
                            true
                        }
                    }
                }
                _ => {
                    entries.push((k, v));
                    true
                }
            },
            Entries::Points(m) => m.insert(k, v).is_none(),
            Entries::Grouped(m) => match m.get_mut(group_of(&k)) {
                // A group is one user's or target's entries of a second or
                // so: a few at most.
                Some(group) => match group.iter_mut().find(|(e, _)| *e == k) {
                    Some(entry) => {
                        entry.1 = v;
                        false
                    }
                    None => {
                        group.push((k, v));
                        true
                    }
                },
                None => {
                    let group: Box<[u8]> = group_of(&k).into();
                    m.insert(group, vec![(k, v)]);
                    true
                }
            },
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Slice> {
        match self {
            Entries::Ordered(entries) => entries
                .binary_search_by(|(e, _)| e.as_ref().cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            Entries::Points(m) => m.get(key),
            Entries::Grouped(m) => m
                .get(group_of(key))
                .and_then(|g| g.iter().rev().find(|(k, _)| k.as_ref() == key))
                .map(|(_, v)| v),
        }
    }

    /// The largest key of the group `prefix` names (a `journal` group's
    /// is its user's last seq); `None` for the other shapes.
    pub(super) fn last_in_group(&self, prefix: &[u8]) -> Option<&Slice> {
        match self {
            Entries::Grouped(m) => last_key(m.get(prefix)?),
            Entries::Ordered(_) | Entries::Points(_) => None,
        }
    }

    /// The largest key of every group, in no particular order.
    pub(super) fn group_lasts(&self) -> Vec<&Slice> {
        match self {
            Entries::Grouped(m) => m.values().filter_map(|g| last_key(g)).collect(),
            Entries::Ordered(_) | Entries::Points(_) => Vec::new(),
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
        let pick = |(k, v): (&Slice, &Slice)| in_range(k, from, to).then(|| (k.clone(), v.clone()));
        match self {
            Entries::Ordered(entries) => {
                let first = entries.partition_point(|(k, _)| match from {
                    Bound::Included(f) => k.as_ref() < f,
                    Bound::Excluded(f) => k.as_ref() <= f,
                    Bound::Unbounded => false,
                });
                let rest = &entries[first..];
                let end = rest.partition_point(|(k, _)| in_range(k, Bound::Unbounded, to));
                let found = &rest[..end];
                let n = found.len().min(limit);
                let picked = if rev {
                    &found[found.len() - n..]
                } else {
                    &found[..n]
                };
                out.extend(picked.iter().cloned());
            }
            Entries::Points(m) => out.extend(m.iter().filter_map(pick)),
            Entries::Grouped(m) => {
                let one = bound_key(&from)
                    .zip(bound_key(&to))
                    .filter(|(f, t)| group_of(f) == group_of(t))
                    .map(|(f, _)| group_of(f));
                match one {
                    Some(g) => {
                        let group = m.get(g).map(Vec::as_slice).unwrap_or_default();
                        out.extend(group.iter().filter_map(|(k, v)| pick((k, v))));
                    }
                    None => out.extend(m.values().flatten().filter_map(|(k, v)| pick((k, v)))),
                }
            }
        }
    }

    /// Every entry, in ascending key order (one per key: a key put again
    /// replaces its entry).
    pub(super) fn sorted(&self) -> Vec<(Slice, Slice)> {
        let mut out = Vec::with_capacity(self.len());
        let all = (Bound::Unbounded, Bound::Unbounded);
        self.range_into(all, (false, usize::MAX), &mut out);
        if !matches!(self, Entries::Ordered(_)) {
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }
}

/// Sorts entries by key and keeps one per key: of equal ones, the last in
/// `out` (the stable sort keeps their order; reversed first, the last put
/// comes first and `dedup` keeps it).
pub(super) fn sort_dedup(out: &mut Vec<(Slice, Slice)>) {
    out.reverse();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, first| later.0 == first.0);
}
