//! Per-user absolute contributions to the daily and status projections:
//! for each key a commit touches, the user's count "as of seq S", from the
//! stored row plus the user's events after the row's `as_of`, written
//! `USING TIMESTAMP` derived from S (see the module docs of `scylladb`),
//! in the commit's unlogged batches ([`Plain`]).

use super::plain::Plain;
use super::{bounded, day_num, read, shard, ScyllaStore};
use crate::domain::{InteractionTracked, InteractionType};
use crate::projections::daily_key;
use crate::store::StoreError;
use futures::future::BoxFuture;
use std::collections::BTreeMap;

/// A key's new count, `None` when the stored row counts the events already.
type Counted<'a> = BoxFuture<'a, Result<Option<(Key, i64)>, StoreError>>;

/// A projection row of one user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// (day of occurrence, type, campaign; '' = none) of `daily_contrib`.
    Daily(i32, InteractionType, String),
    /// Day of recording, of `status_contrib`.
    Status(i32),
}

/// Adds to `plain` the user's rows for every key the events (ascending
/// seqs, ending at `last`) touch, after reading the stored rows they build
/// on.
///
/// Events that start at the user's seq 1 are all the user has up to
/// `last`, so each count is computed from zero, without reading the stored
/// rows (a new user's first commit, the common case under many users): a
/// row already there can only be the same count, written by a racing
/// repair of these very events.
pub(super) async fn rows<'a>(
    s: &'a ScyllaStore,
    user: &'a str,
    events: &[&InteractionTracked],
    last: u64,
    mode: Mode,
    plain: &mut Plain<'a>,
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
    let sh = shard(user);
    let futs: Vec<Counted<'_>> = keys
        .into_iter()
        .map(|(key, seqs)| -> BoxFuture<'_, _> {
            Box::pin(async move {
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
                // `None`: the row counts these events already.
                Ok(added(base, &seqs).map(|count| (key, count)))
            })
        })
        .collect();
    let (as_of, ts) = (last as i64, mode.timestamp(last));
    for (key, count) in bounded(futs).await?.into_iter().flatten() {
        match key {
            Key::Daily(day, ty, campaign) => plain.push(
                &s.st.daily_put,
                (day, ty.as_str(), campaign, sh, user, count, as_of, ts),
            ),
            Key::Status(day) => {
                plain.push(&s.st.status_put, (day, sh, user, count, as_of, ts));
            }
        }
    }
    Ok(())
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
