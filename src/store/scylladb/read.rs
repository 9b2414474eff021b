//! The read path of the ScyllaDB store: an event by id (its owner, then the
//! user's id row), a user's events (its id rows up to its head), the
//! recent and target listings, the statistics summed over the
//! per-partition rollups, and the full walks `tracking verify` makes.
//!
//! Everything derived behind the journal (ids, listings, statistics)
//! trails the commits by the followers' lag (about a second); a user's
//! own rows and statistics do not.

use super::head::UserHead;
use super::{
    bounded, day_num, exec_err, from_parts, num_day, pager_err, rows_err, stored, ScyllaStore,
};
use crate::domain::{InteractionTracked, InteractionType, RejectReason, Rejection};
use crate::store::{
    DailyStat, JournalRecord, StatsQuery, StatusStat, StoreError, StoredEvent, StoredRejection,
    UserStats,
};
use chrono::NaiveDate;
use futures::future::BoxFuture;
use futures::StreamExt;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

pub(crate) async fn rows<R, V>(
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

/// A place in `log`: partition, major, minor.
type Place = (u32, u64, u64);

/// The events found in one block of `log`, by place.
type Found = Result<Vec<(Place, Vec<u8>)>, StoreError>;

/// The events of `log` at these places, in the order given (places that
/// hold no event are left out).
async fn log_events(s: &ScyllaStore, places: &[Place]) -> Result<Vec<StoredEvent>, StoreError> {
    use std::collections::BTreeMap;
    let mut by_block: BTreeMap<(u32, u64, i64), Vec<i64>> = BTreeMap::new();
    for &(p, major, minor) in places {
        let block = super::write::block_of(crate::domain::position::Position { major, minor });
        by_block
            .entry((p, major, block))
            .or_default()
            .push(minor as i64);
    }
    let futs = by_block
        .into_iter()
        .map(|((p, major, block), minors)| -> BoxFuture<'_, Found> {
            Box::pin(async move {
                let found: Vec<(i64, Option<Vec<u8>>)> = rows(
                    s,
                    &s.st.log_rows_get,
                    (p as i32, major as i64, block, minors),
                )
                .await?;
                Ok(found
                    .into_iter()
                    .filter_map(|(minor, blob)| Some(((p, major, minor.max(0) as u64), blob?)))
                    .collect())
            })
        })
        .collect();
    let found: std::collections::HashMap<Place, Vec<u8>> =
        bounded(futs).await?.into_iter().flatten().collect();
    places
        .iter()
        .filter_map(|place| found.get(place).map(|blob| (place, blob)))
        .map(|(&(p, _, minor), blob)| {
            let e = InteractionTracked::decode(blob)?;
            let pos = super::event_pos(e.recorded_or_occurred(), p, minor);
            Ok(StoredEvent::new(pos, e))
        })
        .collect()
}

fn place(p: Option<i32>, major: Option<i64>, minor: Option<i64>) -> Option<Place> {
    Some((p?.max(0) as u32, major?.max(0) as u64, minor?.max(0) as u64))
}

pub async fn interaction(s: &ScyllaStore, id: &str) -> Result<Option<StoredEvent>, StoreError> {
    type Owner = (String, Option<i32>, Option<i64>, Option<i64>);
    let owners: Vec<Owner> = rows(s, &s.st.owner_get, (id,)).await?;
    for (_, p, major, minor) in owners {
        if let Some(at) = place(p, major, minor) {
            if let Some(e) = log_events(s, &[at]).await?.into_iter().next() {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// The user's events with `seq > after`, ascending, at most `limit`: the
/// places of its latest events (its head) and of the older ones (its id
/// rows, those at or below the head's seq), read from `log`.
pub async fn user_events(
    s: &ScyllaStore,
    user: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let Some((last_seq, head)) = super::view::head(s, user).await? else {
        return Ok(Vec::new());
    };
    let mut places: Vec<(u64, Place)> = head
        .recent
        .iter()
        .map(|r| (r.seq, (r.partition, r.major, r.minor)))
        .collect();
    let oldest_in_head = places.first().map_or(u64::MAX, |p| p.0);
    if after + 1 < oldest_in_head {
        let pager = s
            .session
            .execute_iter(s.st.user_ids_get.clone(), (user,))
            .await
            .map_err(pager_err)?;
        let mut stream = pager
            .rows_stream::<(Option<i64>, Option<i32>, Option<i64>, Option<i64>)>()
            .map_err(rows_err)?;
        while let Some(row) = stream.next().await {
            let (seq, p, major, minor) = row.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let seq = seq.unwrap_or(0).max(0) as u64;
            if let (true, Some(at)) = (
                seq <= last_seq && seq < oldest_in_head,
                place(p, major, minor),
            ) {
                places.push((seq, at));
            }
        }
    }
    places.retain(|(seq, _)| *seq > after);
    places.sort_unstable();
    places.dedup_by_key(|(seq, _)| *seq);
    places.truncate(limit);
    let at: Vec<Place> = places.into_iter().map(|(_, p)| p).collect();
    log_events(s, &at).await
}

fn listed(found: Vec<(i64, Vec<u8>)>) -> Result<Vec<StoredEvent>, StoreError> {
    found
        .into_iter()
        .map(|(pos, blob)| stored(pos, &blob))
        .collect()
}

/// Blocks of a partition the recent list reads back at most.
const RECENT_BLOCKS: i32 = 64;

/// The newest events first, below `before`: read from the end of each
/// partition's `log`, newest block first (positions follow recording time
/// within a partition), merged. Looks back at most [`RECENT_BLOCKS`]
/// blocks per partition (about 65,000 commands): older events are read by
/// user, id or target.
pub async fn recent(
    s: &ScyllaStore,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let before = before.unwrap_or(u64::MAX);
    let parts = super::fold::partitions(s).await?;
    let futs = parts
        .into_iter()
        .map(|p| -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
            Box::pin(recent_of(s, p, before, limit))
        })
        .collect();
    let mut all: Vec<StoredEvent> = bounded(futs).await?.into_iter().flatten().collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.pos));
    all.truncate(limit);
    Ok(all)
}

async fn recent_of(
    s: &ScyllaStore,
    p: u32,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let blocks: Vec<(i64, i64)> = rows(
        s,
        &s.st.blocks_newest,
        (p as i32, i64::MAX, i64::MAX, RECENT_BLOCKS),
    )
    .await?;
    for (major, block) in blocks {
        let found: Vec<(i64, Option<Vec<u8>>)> =
            rows(s, &s.st.log_newest, (p as i32, major, block, i32::MAX)).await?;
        for (minor, blob) in found {
            let Some(blob) = blob else { continue };
            let e = InteractionTracked::decode(&blob)?;
            let pos = super::event_pos(e.recorded_or_occurred(), p, minor.max(0) as u64);
            if pos < before {
                out.push(StoredEvent::new(pos, e));
            }
        }
        if out.len() >= limit {
            break;
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
        let found: Vec<(i64, Vec<u8>)> =
            rows(s, &s.st.target_get, (target, day_num(day), want)).await?;
        out.extend(listed(found)?);
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Ok(out)
}

/// Every record of the journal (`log`), partition by partition, block by
/// block, in log order within a partition.
pub async fn visit_journal(
    s: &ScyllaStore,
    visit: &mut (dyn FnMut(JournalRecord) + Send),
) -> Result<u64, StoreError> {
    let mut n = 0;
    for p in super::fold::partitions(s).await? {
        let mut after = None;
        loop {
            let page = super::fold::read(s, p, after, crate::domain::position::Position::MAX, 4096)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.position);
            n += page.len() as u64;
            for r in page {
                visit(r.record);
            }
        }
    }
    Ok(n)
}

/// A rollup row: `day, kind, campaign, count, uniques, accepted, rejected`.
pub(crate) type RollupRow = (
    i32,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Every partition's rollup rows of the days `from..=to`.
async fn rollups(
    s: &ScyllaStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<RollupRow>, StoreError> {
    let parts = super::fold::partitions(s).await?;
    let futs = parts
        .into_iter()
        .map(|p| -> BoxFuture<'_, Result<Vec<RollupRow>, StoreError>> {
            Box::pin(rows(
                s,
                &s.st.rollup_range_get,
                (p as i32, day_num(from), day_num(to)),
            ))
        })
        .collect();
    Ok(bounded(futs).await?.into_iter().flatten().collect())
}

fn n(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

pub async fn daily_stats(s: &ScyllaStore, q: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
    let mut sums: std::collections::BTreeMap<(i32, InteractionType, String), (u64, u64)> =
        Default::default();
    for (day, kind, campaign, count, uniques, _, _) in rollups(s, q.from, q.to).await? {
        if kind.is_empty() {
            continue; // a status row
        }
        let Some(ty) = InteractionType::parse(&kind) else {
            return Err(StoreError::Corrupt(format!(
                "unknown interaction type {kind:?}"
            )));
        };
        let campaign_id = (!campaign.is_empty()).then_some(campaign.clone());
        if q.interaction_type.is_some_and(|t| t != ty)
            || q.campaign_id
                .as_ref()
                .is_some_and(|c| Some(c) != campaign_id.as_ref())
        {
            continue;
        }
        let e = sums.entry((day, ty, campaign)).or_default();
        e.0 += n(count);
        e.1 += n(uniques);
    }
    let mut out: Vec<DailyStat> = sums
        .into_iter()
        .filter(|(_, (count, _))| *count > 0)
        .map(|((day, ty, campaign), (count, unique_users))| DailyStat {
            day: num_day(day),
            interaction_type: ty,
            campaign_id: (!campaign.is_empty()).then_some(campaign),
            count,
            unique_users,
        })
        .collect();
    out.sort();
    Ok(out)
}

pub async fn status_stats(
    s: &ScyllaStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<StatusStat>, StoreError> {
    let mut sums: std::collections::BTreeMap<i32, (u64, u64)> = Default::default();
    for (day, kind, _, _, _, accepted, rejected) in rollups(s, from, to).await? {
        if kind.is_empty() {
            let e = sums.entry(day).or_default();
            e.0 += n(accepted);
            e.1 += n(rejected);
        }
    }
    Ok(sums
        .into_iter()
        .filter(|(_, (a, r))| a + r > 0)
        .map(|(day, (accepted, rejected))| StatusStat {
            day: num_day(day),
            accepted,
            rejected,
        })
        .collect())
}

/// Every user's statistics (a full walk of the heads, for `verify`).
pub async fn all_user_stats(s: &ScyllaStore) -> Result<Vec<UserStats>, StoreError> {
    let pager = s
        .session
        .execute_iter(s.st.heads_all.clone(), ())
        .await
        .map_err(pager_err)?;
    let mut stream = pager
        .rows_stream::<(String, String, Option<i64>, Option<Vec<u8>>)>()
        .map_err(rows_err)?;
    let mut out = Vec::new();
    while let Some(row) = stream.next().await {
        let (_, k, _, state) = row.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if !k.is_empty() {
            continue;
        }
        if let Some(stats) = state
            .map(|b| UserHead::decode(&b))
            .transpose()?
            .and_then(|h| h.stats)
        {
            out.push(stats);
        }
    }
    Ok(out)
}

/// A rejection from its `log` columns.
pub(crate) fn rejection_of(
    pos: u64,
    command_id: String,
    reason: &str,
    detail: String,
    at: i64,
    at_ns: Option<i32>,
) -> Result<StoredRejection, StoreError> {
    let reason = RejectReason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown reject reason {reason:?}")))?;
    Ok(StoredRejection {
        pos,
        rejection: Rejection {
            command_id,
            reason,
            detail,
            rejected_at: from_parts(at, at_ns)?,
        },
    })
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
