//! Recent rows of the daily-stats and status projections, held in memory.
//!
//! Under ingest every apply rewrites the same few counter rows, and fjall
//! keeps every version of a key in the memtable until it is flushed: a
//! range read of those rows walks thousands of versions. Profiled under
//! 5,000 events/s with 1,000 `GET /tracking/stats/daily` per second, half
//! of the process's CPU went to that walk (the memtable's skip list).
//!
//! A mirror holds every row whose day is at or after its `from` day
//! (`MIRROR_DAYS` before today when opened or moved). It is filled at open,
//! changed right after each apply's commit (so it never shows a change the
//! keyspace does not hold), and answers the queries that start inside its
//! window without touching fjall or the blocking pool. Older ranges are
//! read from the keyspace. Its size is bounded by its window: rows per day
//! (types × campaigns) times `MIRROR_DAYS`.

use chrono::{Days, NaiveDate};
use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Days before today kept in memory (dashboards ask for a day, a week, a
/// month).
pub(super) const MIRROR_DAYS: u64 = 35;

/// A row key that starts with its day.
pub(super) trait DayKey: Ord + Clone {
    fn day(&self) -> NaiveDate;
}

impl DayKey for NaiveDate {
    fn day(&self) -> NaiveDate {
        *self
    }
}

impl DayKey for crate::store::projections::DailyKey {
    fn day(&self) -> NaiveDate {
        self.0
    }
}

/// Two counters per row, like the keyspaces hold them.
pub(super) type Counters = (u64, u64);

pub(super) struct Mirror<K> {
    rows: RwLock<Rows<K>>,
}

struct Rows<K> {
    /// Every stored row with a day at or after this one is in `rows`.
    from: NaiveDate,
    rows: BTreeMap<K, Counters>,
}

/// The first day of the window that ends today.
pub(super) fn window_start(today: NaiveDate) -> NaiveDate {
    today
        .checked_sub_days(Days::new(MIRROR_DAYS))
        .unwrap_or(NaiveDate::MIN)
}

impl<K: DayKey> Mirror<K> {
    /// A mirror of the window that ends `today`, filled with `rows` (those
    /// before the window are ignored).
    pub(super) fn new(today: NaiveDate, rows: impl IntoIterator<Item = (K, Counters)>) -> Self {
        let from = window_start(today);
        let rows = rows.into_iter().filter(|(k, _)| k.day() >= from).collect();
        Mirror {
            rows: RwLock::new(Rows { from, rows }),
        }
    }

    /// The first day it holds.
    #[cfg(test)]
    pub(super) fn from(&self) -> NaiveDate {
        self.read().from
    }

    /// Takes the values of rows just committed; moves the window to end
    /// `today` first (dropping the days that left it).
    pub(super) fn update(
        &self,
        today: NaiveDate,
        changed: impl IntoIterator<Item = (K, Counters)>,
    ) {
        let mut m = self.write();
        let from = window_start(today);
        if from > m.from {
            m.rows.retain(|k, _| k.day() >= from);
            m.from = from;
        }
        for (k, v) in changed {
            if k.day() >= m.from {
                m.rows.insert(k, v);
            }
        }
    }

    /// Forgets every row (the keyspace was cleared).
    pub(super) fn clear(&self) {
        self.write().rows.clear();
    }

    /// The rows of days `from..=to` in key order, through `f`; `None` when
    /// `from` is before the window (the caller reads the keyspace).
    pub(super) fn query<R>(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        mut f: impl FnMut(&K, Counters) -> Option<R>,
    ) -> Option<Vec<R>> {
        let m = self.read();
        if from < m.from {
            return None;
        }
        Some(
            m.rows
                .iter()
                .skip_while(|(k, _)| k.day() < from)
                .take_while(|(k, _)| k.day() <= to)
                .filter_map(|(k, v)| f(k, *v))
                .collect(),
        )
    }

    // A panic while holding the lock cannot leave a half-made row (each
    // change is one insert or one retain), so a poisoned lock is still good.
    fn read(&self) -> RwLockReadGuard<'_, Rows<K>> {
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rows<K>> {
        self.rows.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    fn days(m: &Mirror<NaiveDate>, from: NaiveDate, to: NaiveDate) -> Option<Vec<(u32, u64)>> {
        m.query(from, to, |k, (a, _)| Some((chrono::Datelike::day(k), a)))
    }

    #[test]
    fn serves_only_ranges_inside_its_window() {
        let today = d(31);
        let start = window_start(today);
        assert_eq!(start, NaiveDate::from_ymd_opt(2026, 2, 24).unwrap());
        let before = start.pred_opt().unwrap();
        let m = Mirror::new(today, [(before, (9, 0)), (d(1), (1, 0)), (d(3), (3, 0))]);
        assert_eq!(m.from(), start);
        assert_eq!(
            days(&m, before, today),
            None,
            "before the window: the keyspace"
        );
        assert_eq!(days(&m, start, today), Some(vec![(1, 1), (3, 3)]));
        assert_eq!(days(&m, d(2), d(3)), Some(vec![(3, 3)]));
        assert_eq!(days(&m, d(4), d(2)), Some(vec![]));
    }

    #[test]
    fn updates_and_moves_its_window() {
        let m = Mirror::new(d(10), [(d(1), (1, 1))]);
        m.update(d(10), [(d(1), (2, 1)), (d(11), (5, 5))]);
        assert_eq!(days(&m, d(1), d(31)), Some(vec![(1, 2), (11, 5)]));
        // 35 days later the window starts on March 11 (day 1 left it).
        let later = d(10).checked_add_days(Days::new(36)).unwrap();
        m.update(later, [(d(1), (7, 7))]);
        assert_eq!(m.from(), d(11));
        assert_eq!(days(&m, d(1), d(31)), None);
        assert_eq!(days(&m, d(11), d(31)), Some(vec![(11, 5)]));
        m.clear();
        assert_eq!(days(&m, d(11), d(31)), Some(vec![]));
    }
}
