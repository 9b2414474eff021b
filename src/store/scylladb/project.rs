//! Projecting a user's events: the indexes, the contributions and the
//! stats row (last), after an append, when a user is loaded (the repair of
//! what a crash left unprojected), and for a rebuild.

use super::contrib::{self, Mode};
use super::write::{exec, run_all};
use super::{day_num, exec_err, micros, read, sub_micros, ScyllaStore};
use crate::domain::InteractionTracked;
use crate::projections::daily_key;
use crate::store::{StoreError, StoredEvent, UserStats};
use std::collections::HashSet;

/// Loads a user: the last seq of the journal, after repairing whatever a
/// crash left unprojected (events after the stats row's `last_seq`).
pub async fn load_user(s: &ScyllaStore, user: &str) -> Result<u64, StoreError> {
    let row = read::user_stats(s, user).await?;
    s.keep_stats(user, row.clone());
    let projected = row.as_ref().map_or(0, |r| r.last_seq);
    let last = read::journal_last(s, user, projected).await?;
    if last > projected {
        crate::internal_events::store_repair(last - projected);
        let tail = read::journal(s, user, projected, last, usize::MAX).await?;
        project(s, user, row, tail, Mode::Incremental).await?;
    }
    Ok(last)
}

/// After appending `fresh` (right after `expected`): projects everything
/// from the stats row's mark on (normally exactly `fresh`).
pub(crate) async fn project_after_append(
    s: &ScyllaStore,
    user: &str,
    expected: u64,
    fresh: Vec<StoredEvent>,
) -> Result<(), StoreError> {
    // Usually the row the aggregate's load read, or our previous commit
    // wrote, moments ago: not read again.
    let row = match s.kept_stats(user) {
        Some(row) => row,
        None => read::user_stats(s, user).await?,
    };
    let projected = row.as_ref().map_or(0, |r| r.last_seq);
    let mut tail = if projected < expected {
        read::journal(s, user, projected, expected, usize::MAX).await?
    } else {
        Vec::new()
    };
    tail.extend(fresh.into_iter().filter(|e| e.event.seq > projected));
    if tail.is_empty() {
        return Ok(()); // a racing load projected it all already
    }
    project(s, user, row, tail, Mode::Incremental).await
}

/// Recomputes every projection row of one user from the journal.
pub async fn rebuild_user(s: &ScyllaStore, user: &str) -> Result<(), StoreError> {
    let all = read::journal(s, user, 0, u64::MAX, usize::MAX).await?;
    if all.is_empty() {
        return Ok(());
    }
    project(s, user, None, all, Mode::Rebuild).await
}

/// Writes indexes and projections for `tail` (the user's events right
/// after `row.last_seq`, ascending), the stats row last.
async fn project(
    s: &ScyllaStore,
    user: &str,
    row: Option<UserStats>,
    tail: Vec<StoredEvent>,
    mode: Mode,
) -> Result<(), StoreError> {
    let Some(last) = tail.last().map(|e| e.event.seq) else {
        return Ok(());
    };
    let events: Vec<&InteractionTracked> = tail.iter().map(|e| &*e.event).collect();
    futures::try_join!(
        write_indexes(s, &tail),
        contrib::write(s, user, &events, last, mode),
    )?;
    #[cfg(test)]
    if s.crash_before_stats
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(StoreError::Unavailable(
            "injected crash before the stats row".into(),
        ));
    }
    let mut stats = match (mode, row) {
        (Mode::Incremental, Some(r)) => r,
        _ => UserStats::first(events[0]),
    };
    let skip = usize::from(stats.last_seq == events[0].seq); // `first` folded it
    for e in &events[skip..] {
        stats.fold(e);
    }
    s.session
        .execute_unpaged(
            &s.st.user_stats_put,
            (
                user,
                stats.total as i64,
                stats.clicks as i64,
                stats.views as i64,
                stats.likes as i64,
                stats.last_seq as i64,
                micros(stats.first_occurred_at),
                sub_micros(stats.first_occurred_at),
                micros(stats.last_occurred_at),
                sub_micros(stats.last_occurred_at),
                mode.timestamp(last),
            ),
        )
        .await
        .map_err(exec_err)?;
    s.keep_stats(user, Some(stats));
    Ok(())
}

/// Id lookup, target and recent indexes, and the key/day listings: every
/// write keyed by what it indexes (repeating it changes nothing).
async fn write_indexes(s: &ScyllaStore, tail: &[StoredEvent]) -> Result<(), StoreError> {
    let mut blobs = Vec::with_capacity(tail.len());
    for e in tail {
        blobs.push(e.event.encode()?);
    }
    let mut small: HashSet<Small> = HashSet::new();
    let mut futs = Vec::new();
    for (e, blob) in tail.iter().zip(&blobs) {
        let ev = &e.event;
        let (pos, seq, user) = (e.pos as i64, ev.seq as i64, ev.user_id.as_str());
        let occurred = day_num(ev.occurred_at.date_naive());
        let recorded = day_num(ev.recorded_or_occurred().date_naive());
        // The recent list is ordered and paged by position (commit time).
        let minute = pos / 1000 / 60_000_000;
        let minute_day = (minute * 60).div_euclid(86_400) as i32;
        futs.push(exec(
            s,
            &s.st.id_insert,
            (ev.interaction_id.as_str(), user, seq, pos, blob.as_slice()),
        ));
        futs.push(exec(
            s,
            &s.st.target_insert,
            (
                ev.target.id.as_str(),
                occurred,
                pos,
                user,
                seq,
                blob.as_slice(),
            ),
        ));
        futs.push(exec(
            s,
            &s.st.recent_insert,
            (minute, pos, user, seq, blob.as_slice()),
        ));
        let (day, ty, campaign) = daily_key(ev);
        small.insert(Small::Minute(minute_day, minute));
        small.insert(Small::Key(
            day_num(day),
            ty.as_str(),
            campaign.unwrap_or_default(),
        ));
        small.insert(Small::Day("daily", day_num(day)));
        small.insert(Small::Day("status", recorded));
    }
    let small: Vec<Small> = small.into_iter().filter(|i| !s.known(i)).collect();
    for item in small.iter().cloned() {
        futs.push(match item {
            Small::Minute(day, minute) => exec(s, &s.st.minute_insert, (day, minute)),
            Small::Key(day, ty, campaign) => exec(s, &s.st.daily_key_insert, (day, ty, campaign)),
            Small::Day(kind, day) => exec(s, &s.st.day_insert, (kind, day)),
        });
    }
    run_all(futs).await?;
    s.remember(small);
    Ok(())
}

/// A small row written once per process (the cache only saves writes:
/// writing it again would change nothing).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Small {
    Minute(i32, i64),
    Key(i32, &'static str, String),
    Day(&'static str, i32),
}
