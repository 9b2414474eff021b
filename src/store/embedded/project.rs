//! Projections: folding records with the shared math (`crate::store::projections`)
//! and reading the projection tables.
//!
//! An apply's rows and checkpoint are held in memory with the index
//! entries ([`super::pending`]) and ingested by the next index checkpoint,
//! not written through the LSM's memtables and log: the rows of a user or
//! bucket applied many times a second are ingested once, and an apply
//! does no I/O but its reads, most of them answered by [`super::warm`].

use super::mirror::Counters;
use super::pending::{Ix, Staged};
use super::warm::{Bucket, Membership};
use super::{db_err, keys, Inner};
use crate::hash::{Map, Set};
use crate::store::projections::{daily_key, status_day, DailyKey};
use crate::store::{
    DailyStat, JournalRecord, ProjectionKind, StatsQuery, StatusStat, StoreError, UserStats,
};
use chrono::NaiveDate;
use fjall::{Keyspace, PersistMode, Slice};
use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};
use std::sync::Arc;
use tokio::sync::OwnedMutexGuard;

/// What one `apply` call adds to a projection, aggregated in memory so
/// each row is read and written once per call.
pub(super) struct Delta {
    /// The new checkpoint (the last position folded in).
    to: u64,
    body: Body,
}

enum Body {
    /// Per bucket: events, and the users seen in this call.
    Daily(Map<DailyKey, (u64, Set<String>)>),
    /// Per day: accepted, rejected.
    Status(BTreeMap<NaiveDate, (u64, u64)>),
    /// Per user: the stats of this call's events alone.
    Users(Map<String, UserStats>),
}

impl Delta {
    /// Folds the records above `checkpoint`; `None` if there are none.
    pub(super) fn fold(
        projection: ProjectionKind,
        checkpoint: u64,
        records: &[JournalRecord],
    ) -> Result<Option<Delta>, StoreError> {
        let mut body = match projection {
            ProjectionKind::DailyStats => Body::Daily(Map::default()),
            ProjectionKind::Status => Body::Status(BTreeMap::new()),
            ProjectionKind::UserStats => Body::Users(Map::default()),
        };
        let mut to = checkpoint;
        let mut prev = None;
        for r in records {
            let pos = r.pos();
            if prev.is_some_and(|p| pos <= p) {
                return Err(StoreError::Corrupt(format!(
                    "records to apply are not in ascending position order ({pos} after {prev:?})"
                )));
            }
            prev = Some(pos);
            if pos <= checkpoint {
                continue;
            }
            to = pos;
            match (&mut body, r) {
                (Body::Daily(buckets), JournalRecord::Event(e)) => {
                    let (count, users) = buckets.entry(daily_key(&e.event)).or_default();
                    *count += 1;
                    if !users.contains(&e.event.user_id) {
                        users.insert(e.event.user_id.clone());
                    }
                }
                (Body::Status(days), r) => {
                    let day = days.entry(status_day(r)).or_default();
                    match r {
                        JournalRecord::Event(_) => day.0 += 1,
                        JournalRecord::Rejection(_) => day.1 += 1,
                    }
                }
                (Body::Users(users), JournalRecord::Event(e)) => {
                    match users.get_mut(&e.event.user_id) {
                        Some(s) => s.fold(&e.event),
                        None => {
                            users.insert(e.event.user_id.clone(), UserStats::first(&e.event));
                        }
                    }
                }
                (Body::Daily(_) | Body::Users(_), JournalRecord::Rejection(_)) => {}
            }
        }
        Ok((to > checkpoint).then_some(Delta { to, body }))
    }
}

/// Combines stats of a user's earlier events with those of later ones: the
/// same result as folding every event into `into` (sums, max, min).
fn merge(into: &mut UserStats, more: &UserStats) {
    into.total += more.total;
    into.clicks += more.clicks;
    into.views += more.views;
    into.likes += more.likes;
    into.last_seq = into.last_seq.max(more.last_seq);
    into.first_occurred_at = into.first_occurred_at.min(more.first_occurred_at);
    into.last_occurred_at = into.last_occurred_at.max(more.last_occurred_at);
}

/// A counter row's two counters, held in memory, else in the keyspace;
/// `None` if the projection has no such row.
fn counters(s: &Inner, ix: Ix, key: &[u8], what: &str) -> Result<Option<(u64, u64)>, StoreError> {
    s.index_get(ix, key)?
        .map(|v| keys::take_pair(&v, what))
        .transpose()
}

fn user_key(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + user.len());
    k.push(keys::ROW);
    k.extend_from_slice(user.as_bytes());
    k
}

impl Inner {
    fn projection(&self, p: ProjectionKind) -> &Keyspace {
        match p {
            ProjectionKind::DailyStats => &self.daily,
            ProjectionKind::Status => &self.status,
            ProjectionKind::UserStats => &self.users,
        }
    }

    /// Puts a delta's rows and its checkpoint in place in one commit (in
    /// memory until the next index checkpoint ingests them, see
    /// [`super::pending`]), then moves the cached checkpoint (held locked
    /// by the caller since it was read).
    pub(super) fn apply(
        &self,
        delta: Delta,
        mut checkpoint: OwnedMutexGuard<u64>,
    ) -> Result<u64, StoreError> {
        let mut staged = Staged::default();
        // The rows' new values, for the mirrors once committed.
        let mut daily_rows = Vec::new();
        let mut status_rows = Vec::new();
        // What this commit leaves in the projection, for `warm` after it.
        let mut members_written: Vec<(String, Bucket)> = Vec::new();
        let mut users_written: Vec<(String, keys::UserRow)> = Vec::new();
        // Held through the commit until what it added is known here (see
        // `warm::Warm::members`).
        let mut members = None;
        let ix = match delta.body {
            Body::Daily(buckets) => {
                let known = members.insert(self.warm.members());
                for ((day, ty, campaign), (count, users)) in buckets {
                    let row = keys::bucket(day, ty, campaign.as_deref(), keys::ROW)?;
                    let held = counters(self, Ix::Daily, &row, "daily stats row")?;
                    let (mut n, mut unique) = held.unwrap_or_default();
                    n += count;
                    let bucket = known.bucket(&row);
                    if held.is_none() {
                        known.empty_in_projection(&bucket);
                    }
                    let mut member = keys::bucket(day, ty, campaign.as_deref(), keys::MEMBER)?;
                    let base = member.len();
                    for user in users {
                        let membership = known.membership(&user, &bucket);
                        if membership == Membership::Member {
                            continue;
                        }
                        member.truncate(base);
                        member.extend_from_slice(user.as_bytes());
                        if membership == Membership::NotMember
                            || self.index_get(Ix::Daily, &member)?.is_none()
                        {
                            unique += 1;
                            staged.put(Ix::Daily, &member, &[]);
                        }
                        members_written.push((user, Arc::clone(&bucket)));
                    }
                    staged.put(Ix::Daily, &row, &keys::pair(n, unique));
                    daily_rows.push(((day, ty, campaign), (n, unique)));
                }
                Ix::Daily
            }
            Body::Status(days) => {
                for (day, (accepted, rejected)) in days {
                    let row = keys::day_row(day);
                    let (a, r) =
                        counters(self, Ix::Status, &row, "status row")?.unwrap_or_default();
                    staged.put(Ix::Status, &row, &keys::pair(a + accepted, r + rejected));
                    status_rows.push((day, (a + accepted, r + rejected)));
                }
                Ix::Status
            }
            Body::Users(users) => {
                let mut known = self.warm.users();
                for (user, more) in users {
                    let key = user_key(&user);
                    let stored = match known.touch(user.as_str()) {
                        Some(v) => Some(keys::decode_user_stats(&user, v)?),
                        None => match self.index_get(Ix::Users, &key)? {
                            Some(v) => Some(keys::decode_user_stats(&user, &v)?),
                            None => None,
                        },
                    };
                    let stats = match stored {
                        Some(mut s) => {
                            merge(&mut s, &more);
                            s
                        }
                        None => more,
                    };
                    let row = keys::encode_user_stats(&stats);
                    staged.put(Ix::Users, &key, &row);
                    users_written.push((user, row));
                }
                Ix::Users
            }
        };
        staged.put(ix, keys::CHECKPOINT, &delta.to.to_be_bytes());
        let unsealed = self.pending.commit(staged);
        if let Some(mut known) = members {
            for (user, bucket) in members_written {
                known.add(&user, bucket);
            }
        }
        if !users_written.is_empty() {
            let mut known = self.warm.users();
            for (user, row) in users_written {
                known.put(user.as_str(), row);
            }
        }
        let today = chrono::Utc::now().date_naive();
        if !daily_rows.is_empty() {
            self.daily_mirror.update(today, daily_rows);
        }
        if !status_rows.is_empty() {
            self.status_mirror.update(today, status_rows);
        }
        *checkpoint = delta.to;
        // Past the bound, ingest now (the apply is in place and readable
        // already: a failure only leaves its rows in memory longer).
        if let Err(e) = self.ingest_if_over(unsealed) {
            crate::internal_events::store_error("index_ingest", &e);
        }
        Ok(delta.to)
    }

    pub(super) fn reset(
        &self,
        projection: ProjectionKind,
        mut checkpoint: OwnedMutexGuard<u64>,
    ) -> Result<(), StoreError> {
        // What applies put in memory goes into the keyspace first (no
        // apply runs: the caller holds the checkpoint lock, and no
        // checkpoint's ingestion either: this holds the indexing lock), so
        // that one clear empties the rows and the checkpoint.
        let _one = self.indexing.lock().unwrap_or_else(|e| e.into_inner());
        self.ingest_pending()?;
        self.projection(projection).clear().map_err(db_err)?;
        match projection {
            ProjectionKind::DailyStats => {
                self.daily_mirror.clear();
                self.warm.members().clear();
            }
            ProjectionKind::Status => self.status_mirror.clear(),
            ProjectionKind::UserStats => self.warm.users().clear(),
        }
        self.db.persist(PersistMode::SyncAll).map_err(db_err)?;
        *checkpoint = 0;
        Ok(())
    }

    /// `daily_stats` from the mirror; `None` when the range starts before it.
    pub(super) fn recent_daily_stats(&self, q: &StatsQuery) -> Option<Vec<DailyStat>> {
        if q.from > q.to {
            return Some(Vec::new());
        }
        self.daily_mirror
            .query(q.from, q.to, |key, counters| daily_stat(q, key, counters))
    }

    /// `status_stats` from the mirror; `None` when the range starts before it.
    pub(super) fn recent_status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Option<Vec<StatusStat>> {
        self.status_mirror
            .query(from, to, |day, counters| Some(status_stat(*day, counters)))
    }

    /// `daily_stats` read from the keyspace.
    pub(super) fn daily_stats(&self, q: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
        if q.from > q.to {
            return Ok(Vec::new());
        }
        let mut out: Vec<DailyStat> =
            daily_rows(Source::Store(self, Ix::Daily), q.from, Some(q.to))?
                .iter()
                .filter_map(|(key, counters)| daily_stat(q, key, *counters))
                .collect();
        // Campaigns are length-prefixed in keys: key order is not name order.
        out.sort_unstable_by(|a, b| {
            (a.day, a.interaction_type, &a.campaign_id).cmp(&(
                b.day,
                b.interaction_type,
                &b.campaign_id,
            ))
        });
        Ok(out)
    }

    /// `status_stats` read from the keyspace.
    pub(super) fn status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatusStat>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(
            status_rows(Source::Store(self, Ix::Status), from, Some(to))?
                .into_iter()
                .map(|(day, counters)| status_stat(day, counters))
                .collect(),
        )
    }

    pub(super) fn user_stats(&self, user: &str) -> Result<Option<UserStats>, StoreError> {
        match self.index_get(Ix::Users, &user_key(user))? {
            Some(v) => keys::decode_user_stats(user, &v).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn all_user_stats(&self) -> Result<Vec<UserStats>, StoreError> {
        let (from, to) = ([keys::ROW], [keys::ROW + 1]);
        self.index_range(
            Ix::Users,
            (Included(&from), Excluded(&to)),
            false,
            usize::MAX,
        )
        .map(|entry| {
            let (k, v) = entry?;
            let user = std::str::from_utf8(k.get(1..).unwrap_or_default())
                .map_err(|_| keys::corrupt("user stats key"))?;
            keys::decode_user_stats(user, &v)
        })
        .collect()
    }
}

/// The daily-stats row as a query's item, if the query wants it (the
/// keyspace reader and the mirror both answer through it).
fn daily_stat(
    q: &StatsQuery,
    (day, ty, campaign): &DailyKey,
    (count, unique_users): Counters,
) -> Option<DailyStat> {
    let wanted = q.interaction_type.is_none_or(|t| t == *ty)
        && q.campaign_id
            .as_ref()
            .is_none_or(|c| campaign.as_ref() == Some(c));
    wanted.then(|| DailyStat {
        day: *day,
        interaction_type: *ty,
        campaign_id: campaign.clone(),
        count,
        unique_users,
    })
}

fn status_stat(day: NaiveDate, (accepted, rejected): Counters) -> StatusStat {
    StatusStat {
        day,
        accepted,
        rejected,
    }
}

/// The bounds of the counter rows (tag `ROW`, then the day) of days
/// `from..=to`, or of `from` and every later day.
fn row_range(from: NaiveDate, to: Option<NaiveDate>) -> std::ops::Range<Vec<u8>> {
    let end = match to {
        // Past every key of day `to` (the type byte after the day is < 0xFF).
        Some(to) => [&keys::day_row(to)[..], &[0xFF]].concat(),
        None => vec![keys::ROW + 1],
    };
    keys::day_row(from).to_vec()..end
}

/// Where counter rows are read from: a keyspace alone (at open, when
/// memory holds nothing yet), or the store (memory and keyspace merged).
pub(super) enum Source<'a> {
    Keyspace(&'a Keyspace),
    Store(&'a Inner, Ix),
}

/// The daily-stats rows of `from..=to` (`None`: and every later day), in
/// key order: read by `daily_stats` and to fill the mirror.
pub(super) fn daily_rows(
    src: Source<'_>,
    from: NaiveDate,
    to: Option<NaiveDate>,
) -> Result<Vec<(DailyKey, Counters)>, StoreError> {
    counter_rows(src, from, to, keys::decode_bucket, "daily stats row")
}

/// The status rows of `from..=to` (`None`: and every later day): read by
/// `status_stats` and to fill the mirror.
pub(super) fn status_rows(
    src: Source<'_>,
    from: NaiveDate,
    to: Option<NaiveDate>,
) -> Result<Vec<(NaiveDate, Counters)>, StoreError> {
    let day = |k: &[u8]| Ok(keys::take_day(k.get(1..).unwrap_or_default(), "status key")?.0);
    counter_rows(src, from, to, day, "status row")
}

/// Counter rows of a projection in a day range, keys decoded by `key`.
fn counter_rows<K>(
    src: Source<'_>,
    from: NaiveDate,
    to: Option<NaiveDate>,
    key: impl Fn(&[u8]) -> Result<K, StoreError>,
    what: &str,
) -> Result<Vec<(K, Counters)>, StoreError> {
    let range = row_range(from, to);
    let decode = |(k, v): (Slice, Slice)| Ok((key(&k)?, keys::take_pair(&v, what)?));
    match src {
        Source::Keyspace(ks) => ks
            .range(range)
            .map(|g| decode(g.into_inner().map_err(db_err)?))
            .collect(),
        Source::Store(s, ix) => {
            let bounds = (Included(&range.start[..]), Excluded(&range.end[..]));
            s.index_range(ix, bounds, false, usize::MAX)
                .map(|entry| decode(entry?))
                .collect()
        }
    }
}
