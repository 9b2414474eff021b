//! The followers of the ScyllaDB store ([`crate::store::Folding`]): per
//! partition of the command log, the journal (`log`) is read in log order
//! up to what the log has acknowledged, and folded into
//!
//! - the identity-keyed indexes (`interaction_owners`, `target_events`):
//!   the same record always writes the same rows, so writing them twice
//!   changes nothing;
//! - the partition's statistics (`rollups`): absolute values, written
//!   with the checkpoint in one single-partition batch `USING TIMESTAMP
//!   generation << 40 | folded`, after the indexes.
//!
//! Only acknowledged records are folded, and an acknowledged command's
//! journal row is final (its redelivery, by anyone, writes the same row),
//! so every fold of a partition sees the same records in the same order:
//! the statistics as of `folded` records are one value, whoever computes
//! them, and a follower that falls behind (paused, or its lease lost)
//! writes older values with smaller timestamps, which never win. A
//! follower that finds the stored checkpoint moved past its own starts
//! again from the stored one ([`StaleFold`]).

use super::read::{rejection_of, rows, RollupRow};
use super::write::block_of;
use super::{day_num, exec_err, rows_err, ScyllaStore, CONCURRENCY};
use crate::domain::position::Position;
use crate::domain::InteractionTracked;
use crate::store::{FoldCheckpoint, JournalRecord, LogRecord, StoreError, StoredEvent};
use futures::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchType};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Most distinct statistics rows one fold writes (its batch stays far
/// under the server's batch size limit); a fold stops early at it.
const MAX_ROWS_PER_FOLD: usize = 256;
/// Rows per index batch.
const INDEX_ROWS_PER_BATCH: usize = 64;
/// Blocks listed per request.
const BLOCKS_PER_PAGE: i32 = 64;

/// Another follower moved the partition's checkpoint past this one's
/// (retryable: read the checkpoint again and go on from it).
pub fn stale(partition: u32) -> StoreError {
    StoreError::Unavailable(format!(
        "partition {partition}: the stored checkpoint moved (another follower); starting from it"
    ))
}

/// `kind` of a status row.
const STATUS: &str = "";

/// A statistics row's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rollup {
    count: i64,
    uniques: i64,
    accepted: i64,
    rejected: i64,
}

type RollupKey = (i32, String, String);

/// What a follower keeps of its partition between folds: the statistics
/// rows it has read or written, valid as of `at`.
struct PartFold {
    at: FoldCheckpoint,
    generation: i64,
    rows: HashMap<RollupKey, Rollup>,
    /// Days whose stored rows are all in `rows`.
    days: std::collections::HashSet<i32>,
}

#[derive(Default)]
pub struct Folds(Mutex<HashMap<u32, PartFold>>);

/// The write timestamp of a fold's rows.
fn ts(generation: i64, folded: u64) -> i64 {
    (generation << 40) | (folded as i64 & ((1 << 40) - 1))
}

/// The partitions that have journal rows (cached for a few seconds).
pub async fn partitions(s: &ScyllaStore) -> Result<Vec<u32>, StoreError> {
    let found: Vec<(i32,)> = rows(s, &s.st.partitions_get, ()).await?;
    let mut out: Vec<u32> = found.into_iter().map(|(p,)| p.max(0) as u32).collect();
    out.sort_unstable();
    Ok(out)
}

/// The stored checkpoint of a partition and its generation.
pub async fn checkpoint(s: &ScyllaStore, p: u32) -> Result<(FoldCheckpoint, i64), StoreError> {
    // cp_major, cp_minor, cp_folded, cp_generation.
    type Statics = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let found: Vec<Statics> = rows(s, &s.st.rollup_cp_get, (p as i32,)).await?;
    let Some((major, minor, folded, generation)) = found.into_iter().next() else {
        return Ok((FoldCheckpoint::default(), 0));
    };
    let position = match (major, minor) {
        (Some(a), Some(b)) => Some(Position {
            major: a.max(0) as u64,
            minor: b.max(0) as u64,
        }),
        _ => None,
    };
    Ok((
        FoldCheckpoint {
            position,
            folded: folded.unwrap_or(0).max(0) as u64,
        },
        generation.unwrap_or(0),
    ))
}

/// A `log` row (see `statements::LOG_COLUMNS`).
type LogRow = (
    i64,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i32>,
);

fn record(p: u32, major: u64, row: LogRow) -> Result<LogRecord, StoreError> {
    let (minor, _user, _seq, first, event, command_id, reason, detail, at, at_ns) = row;
    let position = Position {
        major,
        minor: minor.max(0) as u64,
    };
    let mut encoded = None;
    let record = match (event, command_id, reason) {
        (Some(blob), _, _) => {
            let e = InteractionTracked::decode(&blob)?;
            let pos = super::event_pos(e.recorded_or_occurred(), p, position.minor);
            encoded = Some(std::sync::Arc::from(blob));
            JournalRecord::Event(StoredEvent::new(pos, e))
        }
        (None, Some(command_id), Some(reason)) => {
            let at = at.unwrap_or(0);
            let when = super::from_parts(at, at_ns)?;
            JournalRecord::Rejection(rejection_of(
                super::event_pos(when, p, position.minor),
                command_id,
                &reason,
                detail.unwrap_or_default(),
                at,
                at_ns,
            )?)
        }
        _ => {
            return Err(StoreError::Corrupt(format!(
                "journal row {p}:{}:{} is neither an event nor a rejection",
                position.major, position.minor
            )))
        }
    };
    Ok(LogRecord {
        position,
        record,
        first_of_key: first.unwrap_or(false),
        encoded,
    })
}

/// The partition's records after `after` up to `through`, in log order.
pub async fn read(
    s: &ScyllaStore,
    p: u32,
    after: Option<Position>,
    through: Position,
    limit: usize,
) -> Result<Vec<LogRecord>, StoreError> {
    let mut out = Vec::new();
    let mut from_block = after.map_or((0, 0), |a| (a.major as i64, block_of(a)));
    'pages: while out.len() < limit {
        let blocks: Vec<(i64, i64)> = rows(
            s,
            &s.st.blocks_get,
            (p as i32, from_block.0, from_block.1, BLOCKS_PER_PAGE),
        )
        .await?;
        let last_page = blocks.len() < BLOCKS_PER_PAGE as usize;
        for &(major, block) in &blocks {
            let start = Position {
                major: major as u64,
                minor: (block as u64) << (crate::domain::position::BATCH_BITS + 10),
            };
            if start > through {
                break 'pages;
            }
            let lo = match after {
                Some(a) if a.major as i64 == major && block_of(a) == block => a.minor as i64,
                _ => -1,
            };
            let hi = if major as u64 == through.major {
                through.minor.min(i64::MAX as u64) as i64
            } else {
                i64::MAX
            };
            let want = (limit - out.len()).min(i32::MAX as usize) as i32;
            let found: Vec<LogRow> =
                rows(s, &s.st.log_range, (p as i32, major, block, lo, hi, want)).await?;
            for row in found {
                out.push(record(p, major as u64, row)?);
            }
            if out.len() >= limit {
                break 'pages;
            }
        }
        match blocks.last() {
            Some(&(major, block)) if !last_page => from_block = (major, block + 1),
            _ => break,
        }
    }
    Ok(out)
}

/// What a record adds to the statistics: (row, values to add).
fn contributions(r: &LogRecord) -> Vec<(RollupKey, Rollup)> {
    match &r.record {
        JournalRecord::Event(e) => {
            let e = &e.event;
            let day = day_num(e.occurred_at.date_naive());
            let campaign = e.campaign_id.clone().unwrap_or_default();
            vec![
                (
                    (day, e.interaction_type.as_str().to_owned(), campaign),
                    Rollup {
                        count: 1,
                        uniques: i64::from(r.first_of_key),
                        ..Default::default()
                    },
                ),
                (
                    (
                        day_num(e.recorded_or_occurred().date_naive()),
                        STATUS.to_owned(),
                        String::new(),
                    ),
                    Rollup {
                        accepted: 1,
                        ..Default::default()
                    },
                ),
            ]
        }
        JournalRecord::Rejection(rej) => vec![(
            (
                day_num(rej.rejection.rejected_at.date_naive()),
                STATUS.to_owned(),
                String::new(),
            ),
            Rollup {
                rejected: 1,
                ..Default::default()
            },
        )],
    }
}

/// Folds `records` (read after `from`): the indexes, then the statistics
/// and the checkpoint. Stops early after [`MAX_ROWS_PER_FOLD`] distinct
/// statistics rows; the checkpoint returned says how far it went.
pub async fn fold(
    s: &ScyllaStore,
    p: u32,
    from: FoldCheckpoint,
    records: &[LogRecord],
) -> Result<FoldCheckpoint, StoreError> {
    if records.is_empty() {
        return Ok(from);
    }
    let cached = s.folds.0.lock().ok().and_then(|mut f| f.remove(&p));
    let mut part = match cached {
        Some(c) if c.at == from => c,
        _ => {
            let (stored, generation) = checkpoint(s, p).await?;
            if stored != from {
                return Err(stale(p));
            }
            PartFold {
                at: from,
                generation,
                rows: HashMap::new(),
                days: Default::default(),
            }
        }
    };
    // How many records fit, and which days' rows are not known yet.
    let mut touched: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    let mut take = 0;
    for r in records {
        let adds = contributions(r);
        let new_rows = adds
            .iter()
            .filter(|(k, _)| !touched.contains_key(k))
            .count();
        if take > 0 && touched.len() + new_rows > MAX_ROWS_PER_FOLD {
            break;
        }
        for (k, _) in adds {
            touched.entry(k).or_default();
        }
        take += 1;
    }
    let records = &records[..take];
    let mut unknown_days: Vec<i32> = touched
        .keys()
        .map(|k| k.0)
        .filter(|d| !part.days.contains(d))
        .collect();
    unknown_days.sort_unstable();
    unknown_days.dedup();
    if !unknown_days.is_empty() {
        // A statistics row and the partition's checkpoint (its statics),
        // flat: the driver checks a row against one tuple, never nested ones.
        type Loaded = (
            i32,
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let found: Vec<Loaded> = rows(s, &s.st.rollup_days_get, (p as i32, &unknown_days)).await?;
        for (day, kind, campaign, count, uniques, accepted, rejected, folded, generation) in found {
            let row: RollupRow = (day, kind, campaign, count, uniques, accepted, rejected);
            // Rows as of another checkpoint: another follower moved on.
            if folded.unwrap_or(0).max(0) as u64 != from.folded
                || generation.unwrap_or(0) != part.generation
            {
                return Err(stale(p));
            }
            part.rows.entry((row.0, row.1, row.2)).or_insert(Rollup {
                count: row.3.unwrap_or(0),
                uniques: row.4.unwrap_or(0),
                accepted: row.5.unwrap_or(0),
                rejected: row.6.unwrap_or(0),
            });
        }
        part.days.extend(unknown_days);
    }
    for r in records {
        for (k, add) in contributions(r) {
            let row = part.rows.entry(k.clone()).or_default();
            row.count += add.count;
            row.uniques += add.uniques;
            row.accepted += add.accepted;
            row.rejected += add.rejected;
            touched.insert(k, *row);
        }
    }
    write_indexes(s, p, records).await?;
    let last = records[records.len() - 1].position;
    let to = FoldCheckpoint {
        position: Some(last),
        folded: from.folded + records.len() as u64,
    };
    let stamp = ts(part.generation, to.folded);
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    let mut values: Vec<Box<dyn scylla::serialize::row::SerializeRow + Send + Sync>> = Vec::new();
    for ((day, kind, campaign), r) in &touched {
        batch.append_statement(s.st.rollup_put.clone());
        values.push(Box::new((
            p as i32,
            *day,
            kind.clone(),
            campaign.clone(),
            r.count,
            r.uniques,
            r.accepted,
            r.rejected,
            stamp,
        )));
    }
    batch.append_statement(s.st.rollup_cp_put.clone());
    values.push(Box::new((
        stamp,
        last.major as i64,
        last.minor as i64,
        to.folded as i64,
        part.generation,
        p as i32,
    )));
    s.session.batch(&batch, values).await.map_err(exec_err)?;
    part.at = to;
    if let Ok(mut f) = s.folds.0.lock() {
        f.insert(p, part);
    }
    Ok(to)
}

type IndexRow = Box<dyn scylla::serialize::row::SerializeRow + Send + Sync + 'static>;

/// The identity-keyed indexes of the records' events.
async fn write_indexes(s: &ScyllaStore, p: u32, records: &[LogRecord]) -> Result<(), StoreError> {
    type Row = IndexRow;
    let mut owners: Vec<(scylla::statement::prepared::PreparedStatement, Row)> = Vec::new();
    let mut by_partition: BTreeMap<(String, i32), Vec<Row>> = BTreeMap::new();
    for r in records {
        let JournalRecord::Event(e) = &r.record else {
            continue;
        };
        let (pos, ev) = (e.pos as i64, &e.event);
        let blob = match &r.encoded {
            Some(b) => b.to_vec(),
            None => ev.encode()?,
        };
        owners.push((
            s.st.owner_put.clone(),
            Box::new((
                ev.interaction_id.clone(),
                ev.user_id.clone(),
                ev.seq as i64,
                p as i32,
                r.position.major as i64,
                r.position.minor as i64,
            )),
        ));
        let day = day_num(ev.occurred_at.date_naive());
        by_partition
            .entry((ev.target.id.clone(), day))
            .or_default()
            .push(Box::new((
                ev.target.id.clone(),
                day,
                pos,
                ev.user_id.clone(),
                ev.seq as i64,
                blob,
            )));
    }
    let mut batches: Vec<Vec<(scylla::statement::prepared::PreparedStatement, Row)>> = Vec::new();
    for chunk in owners.chunks_mut(INDEX_ROWS_PER_BATCH) {
        batches.push(
            chunk
                .iter_mut()
                .map(|(st, v)| (st.clone(), std::mem::replace(v, Box::new(()))))
                .collect(),
        );
    }
    for (_, rows) in by_partition {
        let st = s.st.target_put.clone();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            batches.push(
                rows.by_ref()
                    .take(INDEX_ROWS_PER_BATCH)
                    .map(|v| (st.clone(), v))
                    .collect(),
            );
        }
    }
    let futs: Vec<_> = batches
        .into_iter()
        .map(|stmts| run_index_batch(s, stmts))
        .collect();
    futures::stream::iter(futs)
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}

fn run_index_batch(
    s: &ScyllaStore,
    stmts: Vec<(scylla::statement::prepared::PreparedStatement, IndexRow)>,
) -> futures::future::BoxFuture<'_, Result<(), StoreError>> {
    Box::pin(async move {
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        let mut values = Vec::with_capacity(stmts.len());
        for (st, v) in stmts {
            batch.append_statement(st);
            values.push(v);
        }
        s.session
            .batch(&batch, values)
            .await
            .map(drop)
            .map_err(exec_err)
    })
}

/// Deletes the partition's statistics and starts a new generation of
/// its checkpoint (see [`crate::store::Folding::refold`]): the delete is
/// below the new generation's first timestamp, the earlier generation's
/// writes are all below it.
pub async fn refold(s: &ScyllaStore, p: u32) -> Result<(), StoreError> {
    let (_, generation) = checkpoint(s, p).await?;
    let next = generation + 1;
    let stamp = ts(next, 0);
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.append_statement(s.st.rollup_delete.clone());
    batch.append_statement(s.st.rollup_cp_reset.clone());
    s.session
        .batch(&batch, ((stamp - 1, p as i32), (stamp, next, p as i32)))
        .await
        .map_err(exec_err)?;
    if let Ok(mut f) = s.folds.0.lock() {
        f.remove(&p);
    }
    Ok(())
}

/// Takes or renews the follower lease of partition `p` (a compare-and-set
/// on what was read: another follower's live lease is left alone).
pub async fn lease(
    s: &ScyllaStore,
    p: u32,
    owner: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let until = now + ttl.as_millis().min(i64::MAX as u128) as i64;
    let found: Vec<(Option<String>, Option<i64>)> = rows(s, &s.st.lease_get, (p as i32,)).await?;
    let result = match found.into_iter().next() {
        None => s
            .session
            .execute_unpaged(&s.st.lease_insert, (p as i32, owner, until))
            .await
            .map_err(exec_err)?,
        Some((holder, expires)) => {
            let live = expires.unwrap_or(0) >= now;
            if live && holder.as_deref() != Some(owner) {
                return Ok(false);
            }
            s.session
                .execute_unpaged(
                    &s.st.lease_update,
                    (
                        owner,
                        until,
                        p as i32,
                        holder.unwrap_or_default(),
                        expires.unwrap_or(0),
                    ),
                )
                .await
                .map_err(exec_err)?
        }
    };
    let rows = result.into_rows_result().map_err(rows_err)?;
    let row: scylla::value::Row = rows.first_row().map_err(rows_err)?;
    Ok(matches!(
        row.columns.first(),
        Some(Some(scylla::value::CqlValue::Boolean(true)))
    ))
}
