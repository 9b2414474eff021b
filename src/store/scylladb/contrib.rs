//! Per-user absolute contributions to the daily and status projections:
//! for each key a commit touches, the user's count "as of seq S", from the
//! stored row plus the user's events after the row's `as_of`, written
//! `USING TIMESTAMP` derived from S (see the module docs of `scylladb`).

use super::write::{exec, run_all, Exec};
use super::{day_num, read, shard, ScyllaStore};
use crate::domain::{InteractionTracked, InteractionType};
use crate::projections::daily_key;
use crate::store::StoreError;
use std::collections::BTreeMap;

/// A projection row of one user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// (day of occurrence, type, campaign; '' = none) of `daily_contrib`.
    Daily(i32, InteractionType, String),
    /// Day of recording, of `status_contrib`.
    Status(i32),
}

/// Writes the user's rows for every key the events (ascending seqs, ending
/// at `last`) touch.
///
/// Events that start at the user's seq 1 are all the user has up to
/// `last`, so each count is computed from zero, without reading the stored
/// rows (a new user's first commit, the common case under many users): a
/// row already there can only be the same count, written by a racing
/// repair of these very events.
pub(super) async fn write(
    s: &ScyllaStore,
    user: &str,
    events: &[&InteractionTracked],
    last: u64,
    mode: Mode,
) -> Result<(), StoreError> {
    let mut keys: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    for e in events {
        let (day, ty, campaign) = daily_key(e);
        let daily = Key::Daily(day_num(day), ty, campaign.unwrap_or_default());
        keys.entry(daily).or_default().push(e.seq);
        let recorded = day_num(e.recorded_or_occurred().date_naive());
        keys.entry(Key::Status(recorded)).or_default().push(e.seq);
    }
    let from_start = events.first().is_some_and(|e| e.seq == 1);
    let futs: Vec<Exec<'_>> = keys
        .into_iter()
        .map(|(key, seqs)| -> Exec<'_> {
            Box::pin(one(s, user, key, seqs, last, mode, from_start))
        })
        .collect();
    run_all(futs).await
}

async fn one(
    s: &ScyllaStore,
    user: &str,
    key: Key,
    seqs: Vec<u64>,
    last: u64,
    mode: Mode,
    from_start: bool,
) -> Result<(), StoreError> {
    let sh = shard(user);
    let base = match (mode, &key) {
        (Mode::Rebuild, _) => (0, 0),
        (Mode::Incremental, _) if from_start => (0, 0),
        (Mode::Incremental, Key::Daily(day, ty, campaign)) => {
            let values = (*day, ty.as_str(), campaign.as_str(), sh, user);
            read::counter_row(s, &s.st.daily_get_user, values).await?
        }
        (Mode::Incremental, Key::Status(day)) => {
            read::counter_row(s, &s.st.status_get_user, (*day, sh, user)).await?
        }
    };
    let Some(count) = added(base, &seqs) else {
        return Ok(()); // the row counts these events already
    };
    let (as_of, ts) = (last as i64, mode.timestamp(last));
    match &key {
        Key::Daily(day, ty, campaign) => {
            let values = (
                *day,
                ty.as_str(),
                campaign.as_str(),
                sh,
                user,
                count,
                as_of,
                ts,
            );
            exec(s, &s.st.daily_put, values).await
        }
        Key::Status(day) => exec(s, &s.st.status_put, (*day, sh, user, count, as_of, ts)).await,
    }
}

/// How contributions are computed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// From the stored rows plus the events after them (timestamp 2*seq).
    Incremental,
    /// From the user's whole journal, ignoring stored rows (timestamp
    /// 2*seq+1: wins over an incremental write of the same seq).
    Rebuild,
}

impl Mode {
    pub(super) fn timestamp(self, seq: u64) -> i64 {
        let ts = (seq as i64).saturating_mul(2);
        match self {
            Mode::Incremental => ts,
            Mode::Rebuild => ts + 1,
        }
    }
}

/// The stored `(count, as_of)` plus the seqs after `as_of`; `None` when no
/// seq is new to the row (nothing to write).
pub(super) fn added((count, as_of): (i64, i64), seqs: &[u64]) -> Option<i64> {
    let new = seqs.iter().filter(|&&q| q as i64 > as_of).count() as i64;
    (new > 0).then_some(count + new)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn added_counts_only_seqs_after_the_rows_mark() {
        assert_eq!(added((0, 0), &[1, 2]), Some(2));
        assert_eq!(added((5, 7), &[6, 7]), None);
        assert_eq!(added((5, 7), &[6, 8, 9]), Some(7));
    }

    #[test]
    fn rebuild_writes_win_over_incremental_ones_of_the_same_seq() {
        assert!(Mode::Rebuild.timestamp(5) > Mode::Incremental.timestamp(5));
        assert!(Mode::Incremental.timestamp(6) > Mode::Rebuild.timestamp(5));
    }
}
