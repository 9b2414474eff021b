//! The read path of the ScyllaDB store: lookups, journal ranges, the
//! recent and target listings, and the projections summed from per-user
//! contribution rows.

use super::{
    all_shards, bounded, day_num, exec_err, from_parts, num_day, pager_err, rows_err, stored,
    ScyllaStore,
};
use crate::domain::{InteractionType, RejectReason, Rejection};
use crate::store::{
    DailyStat, JournalRecord, StatsQuery, StatusStat, StoreError, StoredEvent, StoredRejection,
    UserStats,
};
use chrono::{Days, NaiveDate, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

/// `user_id, seq, pos, event`.
type EventRow = (String, i64, i64, Vec<u8>);
/// How far back the recent list looks (the rows live 7 days).
const RECENT_DAYS: u64 = 8;

async fn rows<R, V>(
    s: &ScyllaStore,
    st: &PreparedStatement,
    values: V,
) -> Result<Vec<R>, StoreError>
where
    V: SerializeRow,
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let result = s
        .session
        .execute_unpaged(st, values)
        .await
        .map_err(exec_err)?;
    let rows = result.into_rows_result().map_err(rows_err)?;
    let out = rows
        .rows::<R>()
        .map_err(rows_err)?
        .collect::<Result<Vec<R>, _>>()
        .map_err(rows_err)?;
    Ok(out)
}

fn events(rows: Vec<EventRow>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter()
        .map(|(_, _, pos, blob)| stored(pos, &blob))
        .collect()
}

pub async fn interaction(s: &ScyllaStore, id: &str) -> Result<Option<StoredEvent>, StoreError> {
    let found: Vec<EventRow> = rows(s, &s.st.id_get, (id,)).await?;
    Ok(events(found)?.into_iter().next())
}

pub async fn owners(s: &ScyllaStore, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
    let futs = ids
        .iter()
        .map(|id| -> BoxFuture<'_, Result<Option<String>, StoreError>> {
            Box::pin(async move {
                let found: Vec<(String,)> = rows(s, &s.st.id_owner_get, (id.as_str(),)).await?;
                Ok(found.into_iter().next().map(|r| r.0))
            })
        })
        .collect();
    bounded(futs).await
}

/// The user's events with `after < seq <= upto`, ascending, at most `limit`.
pub async fn journal(
    s: &ScyllaStore,
    user: &str,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let mut b = s.bucket(after.saturating_add(1));
    while out.len() < limit && after < upto {
        let want = (limit - out.len()).min(i32::MAX as usize) as i32;
        let upto_i = upto.min(i64::MAX as u64) as i64;
        let found: Vec<EventRow> = rows(
            s,
            &s.st.journal_range,
            (user, b, after as i64, upto_i, want),
        )
        .await?;
        let full_bucket = found.last().is_some_and(|r| s.ends_bucket(r.1 as u64));
        let n = found.len();
        out.extend(events(found)?);
        // A later bucket exists only when this one is full.
        if !full_bucket || n == 0 {
            break;
        }
        b += 1;
    }
    Ok(out)
}

/// The last seq of the user's journal, probing from the bucket of `hint`
/// (a seq known to be stored, or 0).
pub async fn journal_last(s: &ScyllaStore, user: &str, hint: u64) -> Result<u64, StoreError> {
    let mut b = s.bucket(hint.max(1));
    let mut last = hint;
    loop {
        let found: Vec<(i64,)> = rows(s, &s.st.journal_last, (user, b)).await?;
        let Some((seq,)) = found.first() else { break };
        let seq = *seq as u64;
        last = last.max(seq);
        if !s.ends_bucket(seq) {
            break;
        }
        b += 1;
    }
    Ok(last)
}

/// The newest events first, below `before` (positions are commit micros *
/// 1000 + n; rows are partitioned by the minute of their position).
pub async fn recent(
    s: &ScyllaStore,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let now_minute = Utc::now().timestamp().div_euclid(60) + 1;
    let start_minute = if before == i64::MAX {
        now_minute
    } else {
        (before / 1000 / 60_000_000).min(now_minute)
    };
    let mut out = Vec::new();
    let start_day = num_day((start_minute * 60).div_euclid(86_400) as i32);
    for back in 0..=RECENT_DAYS {
        let Some(day) = start_day.checked_sub_days(Days::new(back)) else {
            break;
        };
        let minutes: Vec<(i64,)> = rows(s, &s.st.minutes_get, (day_num(day), start_minute)).await?;
        for (minute,) in minutes {
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let found: Vec<EventRow> = rows(s, &s.st.recent_get, (minute, before, want)).await?;
            out.extend(events(found)?);
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

pub async fn by_target(
    s: &ScyllaStore,
    target: &str,
    from: NaiveDate,
    to: NaiveDate,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let mut day = from;
    while day <= to && out.len() < limit {
        let want = (limit - out.len()).min(i32::MAX as usize) as i32;
        let found: Vec<EventRow> = rows(s, &s.st.target_get, (target, day_num(day), want)).await?;
        out.extend(events(found)?);
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Ok(out)
}

/// Every event, then every rejection (a full scan, paged by the driver).
pub async fn visit_journal(
    s: &ScyllaStore,
    visit: &mut (dyn FnMut(JournalRecord) + Send),
) -> Result<u64, StoreError> {
    let mut n = 0;
    let pager = s
        .session
        .execute_iter(s.st.journal_all.clone(), ())
        .await
        .map_err(pager_err)?;
    let mut stream = pager.rows_stream::<EventRow>().map_err(rows_err)?;
    while let Some(row) = stream.next().await {
        let (_, _, pos, blob) = row.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        visit(JournalRecord::Event(stored(pos, &blob)?));
        n += 1;
    }
    let pager = s
        .session
        .execute_iter(s.st.rejections_all.clone(), ())
        .await
        .map_err(pager_err)?;
    let mut stream = pager
        .rows_stream::<(String, String, String, i64, Option<i32>, i64)>()
        .map_err(rows_err)?;
    while let Some(row) = stream.next().await {
        let (command_id, reason, detail, at, at_ns, pos) =
            row.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let reason = RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown reject reason {reason:?}")))?;
        visit(JournalRecord::Rejection(StoredRejection {
            pos: pos.max(0) as u64,
            rejection: Rejection {
                command_id,
                reason,
                detail,
                rejected_at: from_parts(at, at_ns)?,
            },
        }));
        n += 1;
    }
    Ok(n)
}

/// Every user with an event (each once).
pub async fn users(
    s: &ScyllaStore,
    visit: &mut (dyn FnMut(String) + Send),
) -> Result<u64, StoreError> {
    let pager = s
        .session
        .execute_iter(s.st.journal_users.clone(), ())
        .await
        .map_err(pager_err)?;
    let mut stream = pager.rows_stream::<(String, i64)>().map_err(rows_err)?;
    let mut n = 0;
    while let Some(row) = stream.next().await {
        let (user, b) = row.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if b == 0 {
            visit(user);
            n += 1;
        }
    }
    Ok(n)
}

/// A contribution row's `(count, as_of)`, `(0, 0)` if absent.
pub async fn counter_row<V: SerializeRow>(
    s: &ScyllaStore,
    st: &PreparedStatement,
    values: V,
) -> Result<(i64, i64), StoreError> {
    let found: Vec<(Option<i64>, Option<i64>)> = rows(s, st, values).await?;
    Ok(found
        .first()
        .map_or((0, 0), |(c, a)| (c.unwrap_or(0), a.unwrap_or(0))))
}

async fn days(
    s: &ScyllaStore,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<i32>, StoreError> {
    let found: Vec<(i32,)> = rows(s, &s.st.days_get, (kind, day_num(from), day_num(to))).await?;
    Ok(found.into_iter().map(|(d,)| d).collect())
}

pub async fn daily_stats(s: &ScyllaStore, q: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
    let mut keys = Vec::new();
    for day in days(s, "daily", q.from, q.to).await? {
        let found: Vec<(String, String)> = rows(s, &s.st.daily_keys_get, (day,)).await?;
        for (ty, campaign) in found {
            let Some(interaction_type) = InteractionType::parse(&ty) else {
                return Err(StoreError::Corrupt(format!(
                    "unknown interaction type {ty:?}"
                )));
            };
            let campaign_id = (!campaign.is_empty()).then_some(campaign);
            if q.interaction_type.is_some_and(|t| t != interaction_type)
                || q.campaign_id
                    .as_ref()
                    .is_some_and(|c| Some(c) != campaign_id.as_ref())
            {
                continue;
            }
            keys.push((day, interaction_type, campaign_id));
        }
    }
    let futs = keys
        .into_iter()
        .map(
            |(day, ty, campaign)| -> BoxFuture<'_, Result<DailyStat, StoreError>> {
                Box::pin(async move {
                    let c = campaign.clone().unwrap_or_default();
                    let (count, users) = sum_shards(s, &s.st.daily_sum, |shard| {
                        (day, ty.as_str(), c.clone(), shard)
                    })
                    .await?;
                    Ok::<_, StoreError>(DailyStat {
                        day: num_day(day),
                        interaction_type: ty,
                        campaign_id: campaign,
                        count: count.max(0) as u64,
                        unique_users: users.max(0) as u64,
                    })
                })
            },
        )
        .collect();
    let mut out: Vec<DailyStat> = bounded(futs).await?;
    out.retain(|d| d.count > 0);
    out.sort();
    Ok(out)
}

pub async fn status_stats(
    s: &ScyllaStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<StatusStat>, StoreError> {
    let found = days(s, "status", from, to).await?;
    let futs = found
        .into_iter()
        .map(|day| -> BoxFuture<'_, Result<StatusStat, StoreError>> {
            Box::pin(async move {
                let ((accepted, _), rejected) = futures::try_join!(
                    sum_shards(s, &s.st.status_sum, |shard| (day, shard)),
                    per_shard::<(i64,), _>(s, &s.st.rejections_count, |shard| (day, shard)),
                )?;
                let rejected: i64 = rejected.iter().map(|r| r.0).sum();
                Ok::<_, StoreError>(StatusStat {
                    day: num_day(day),
                    accepted: accepted.max(0) as u64,
                    rejected: rejected.max(0) as u64,
                })
            })
        })
        .collect();
    let mut out = bounded(futs).await?;
    out.retain(|s| s.accepted + s.rejected > 0);
    Ok(out)
}

/// One query per shard's partition, concurrently (an aggregate over an
/// `IN` of partitions would gather them all on one coordinator).
async fn per_shard<R, V>(
    s: &ScyllaStore,
    st: &PreparedStatement,
    values: impl Fn(i32) -> V,
) -> Result<Vec<R>, StoreError>
where
    V: SerializeRow,
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let parts = futures::future::try_join_all(
        all_shards()
            .into_iter()
            .map(|shard| rows::<R, V>(s, st, values(shard))),
    )
    .await?;
    Ok(parts.into_iter().flatten().collect())
}

/// `(sum, count)` of a `SELECT sum(x), count(*)` over every shard.
async fn sum_shards<V: SerializeRow>(
    s: &ScyllaStore,
    st: &PreparedStatement,
    values: impl Fn(i32) -> V,
) -> Result<(i64, i64), StoreError> {
    let parts: Vec<(Option<i64>, i64)> = per_shard(s, st, values).await?;
    Ok(parts
        .iter()
        .fold((0, 0), |(sum, n), (x, c)| (sum + x.unwrap_or(0), n + c)))
}

/// `user_id, total, clicks, views, likes, last_seq, first_at(_ns), last_at(_ns)`.
type StatsRow = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i32>,
    i64,
    Option<i32>,
);

fn user_row(r: StatsRow) -> Result<UserStats, StoreError> {
    let (user_id, total, clicks, views, likes, last_seq, first, first_ns, last, last_ns) = r;
    Ok(UserStats {
        user_id,
        total: total.max(0) as u64,
        clicks: clicks.max(0) as u64,
        views: views.max(0) as u64,
        likes: likes.max(0) as u64,
        last_seq: last_seq.max(0) as u64,
        first_occurred_at: from_parts(first, first_ns)?,
        last_occurred_at: from_parts(last, last_ns)?,
    })
}

pub async fn user_stats(s: &ScyllaStore, user: &str) -> Result<Option<UserStats>, StoreError> {
    let found: Vec<StatsRow> = rows(s, &s.st.user_stats_get, (user,)).await?;
    found.into_iter().next().map(user_row).transpose()
}

pub async fn all_user_stats(s: &ScyllaStore) -> Result<Vec<UserStats>, StoreError> {
    let pager = s
        .session
        .execute_iter(s.st.user_stats_all.clone(), ())
        .await
        .map_err(pager_err)?;
    let mut stream = pager.rows_stream::<StatsRow>().map_err(rows_err)?;
    let mut out = Vec::new();
    while let Some(row) = stream.next().await {
        out.push(user_row(
            row.map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )?);
    }
    Ok(out)
}

/// A statistics answer kept for a moment.
#[derive(Clone)]
pub enum Cached {
    Daily(Vec<DailyStat>),
    Status(Vec<StatusStat>),
}

/// Statistics answers by query, reused for `ttl` (bounded: at most
/// [`StatsCache::MAX`] queries, then it starts over).
pub struct StatsCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Cached)>>,
}

impl StatsCache {
    const MAX: usize = 1024;

    pub fn new(ttl: std::time::Duration) -> Self {
        StatsCache {
            ttl,
            entries: Default::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Cached> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, key: String, value: Cached) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX {
                entries.clear();
            }
            entries.insert(key, (std::time::Instant::now(), value));
        }
    }
}
