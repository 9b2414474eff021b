//! The write path of the ScyllaDB store: conditional journal appends, then
//! the idempotent indexes and per-user absolute projection rows, then the
//! user's stats row (the "projected up to" mark). Also the repair that
//! loading a user runs, and the per-user rebuild.

use super::{
    bounded, day_num, exec_err, micros, read, rows_err, shard, sub_micros, ScyllaStore, CONCURRENCY,
};
use crate::domain::Rejection;
use crate::store::{
    AppendConflict, AppendGroup, GroupOutcome, StoreError, StoredEvent, WriteBatch, WriteOutcome,
};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Events per conditional batch (the server refuses batches over
/// `batch_size_fail_threshold`, 50 KiB by default; events are ~300 bytes).
const MAX_BATCH: usize = 64;

pub async fn write(s: &ScyllaStore, batch: &WriteBatch) -> Result<WriteOutcome, StoreError> {
    let rejections = async {
        // A command id twice in one batch: the second is a repeat (`None`),
        // as if it came in a later batch.
        let mut seen = HashSet::new();
        let futs = batch
            .rejections
            .iter()
            .map(|r| -> BoxFuture<'_, _> {
                if seen.insert(r.command_id.as_str()) {
                    Box::pin(reject(s, r))
                } else {
                    Box::pin(async { Ok(None) })
                }
            })
            .collect();
        bounded(futs).await
    };
    let (groups, rejections) = futures::try_join!(append_groups(s, &batch.groups), rejections)?;
    Ok(WriteOutcome { groups, rejections })
}

/// Groups of different users run concurrently; a user's second group in the
/// same batch runs after its first (in "waves"), as if in a later batch.
async fn append_groups(
    s: &ScyllaStore,
    groups: &[AppendGroup],
) -> Result<Vec<GroupOutcome>, StoreError> {
    // A group runs after the user's earlier groups and after every earlier
    // group claiming one of its interaction ids (which it then conflicts
    // with, as in the embedded store).
    let mut wave_of = Vec::with_capacity(groups.len());
    let mut next_of_user: HashMap<&str, usize> = HashMap::new();
    let mut next_of_id: HashMap<&str, usize> = HashMap::new();
    for g in groups {
        let mut w = next_of_user.get(g.user_id.as_str()).copied().unwrap_or(0);
        for e in &g.events {
            w = w.max(
                next_of_id
                    .get(e.interaction_id.as_str())
                    .copied()
                    .unwrap_or(0),
            );
        }
        wave_of.push(w);
        next_of_user.insert(&g.user_id, w + 1);
        for e in &g.events {
            next_of_id.insert(&e.interaction_id, w + 1);
        }
    }
    let waves = wave_of.iter().max().map_or(0, |w| w + 1);
    let mut out: Vec<Option<GroupOutcome>> = vec![None; groups.len()];
    for wave in 0..waves {
        let idx: Vec<usize> = (0..groups.len()).filter(|&i| wave_of[i] == wave).collect();
        let futs = idx
            .iter()
            .map(|&i| -> BoxFuture<'_, _> { Box::pin(append_group(s, &groups[i])) })
            .collect();
        for (i, o) in idx.into_iter().zip(bounded(futs).await?) {
            out[i] = Some(o);
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("group without an outcome".into())))
        .collect()
}

async fn append_group(s: &ScyllaStore, g: &AppendGroup) -> Result<GroupOutcome, StoreError> {
    let fresh = match append_journal(s, g).await? {
        Ok(fresh) => fresh,
        Err(conflict) => return Ok(GroupOutcome::Conflict(conflict)),
    };
    let first_pos = match fresh.first() {
        Some(e) => e.pos,
        None => s.positions(0),
    };
    if !fresh.is_empty() {
        super::project::project_after_append(s, &g.user_id, g.expected_last_seq, fresh).await?;
    }
    Ok(GroupOutcome::Appended { first_pos })
}

/// Step 1 alone: the conditional journal append (tests use it to leave a
/// "crashed" append behind). Returns the appended events.
pub(crate) async fn append_journal(
    s: &ScyllaStore,
    g: &AppendGroup,
) -> Result<Result<Vec<StoredEvent>, AppendConflict>, StoreError> {
    let n = g.events.len();
    if n == 0 {
        return Ok(Ok(Vec::new()));
    }
    let first_pos = s.positions(n as u64);
    for (k, e) in g.events.iter().enumerate() {
        if e.user_id != g.user_id || e.seq != g.expected_last_seq + k as u64 + 1 {
            return Err(StoreError::Corrupt(format!(
                "group of {} holds event seq {} of {} (expected seq {})",
                g.user_id,
                e.seq,
                e.user_id,
                g.expected_last_seq + k as u64 + 1
            )));
        }
    }
    let mut in_group = HashSet::new();
    if let Some(dup) = g
        .events
        .iter()
        .find(|e| !in_group.insert(&e.interaction_id))
    {
        return Ok(Err(AppendConflict::InteractionIdTaken {
            interaction_id: dup.interaction_id.clone(),
            owner: g.user_id.clone(),
        }));
    }
    // The ids must be free, and the expected last event must exist (the
    // conditional insert below only proves the next seqs are free).
    let ids: Vec<String> = g.events.iter().map(|e| e.interaction_id.clone()).collect();
    let (owners, prev) = futures::try_join!(read::owners(s, &ids), async {
        if g.expected_last_seq == 0 {
            Ok(true)
        } else {
            let e = g.expected_last_seq;
            Ok::<_, StoreError>(!read::journal(s, &g.user_id, e - 1, e, 1).await?.is_empty())
        }
    })?;
    if let Some((id, owner)) = ids.iter().zip(owners).find_map(|(i, o)| o.map(|o| (i, o))) {
        return Ok(Err(AppendConflict::InteractionIdTaken {
            interaction_id: id.clone(),
            owner,
        }));
    }
    if !prev {
        return Ok(Err(mismatch(s, g).await?));
    }
    if s.outbox {
        let last = g.events.last().map_or(0, |e| e.seq);
        super::outbox::record(s, &g.user_id, last).await?;
    }
    let mut fresh = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        // One conditional batch per bucket (one partition), at most
        // MAX_BATCH events (batches are size-limited by the server). A
        // crash between two leaves a prefix: still gap-free.
        let b = s.bucket(g.events[start].seq);
        let end = g.events[start..]
            .iter()
            .take(MAX_BATCH)
            .position(|e| s.bucket(e.seq) != b)
            .map_or((start + MAX_BATCH).min(n), |k| start + k);
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(end - start);
        for (k, e) in g.events[start..end].iter().enumerate() {
            let pos = first_pos + (start + k) as u64;
            batch.append_statement(s.st.journal_insert.clone());
            values.push((
                e.user_id.as_str(),
                b,
                e.seq as i64,
                e.interaction_id.as_str(),
                e.schema_version as i32,
                pos as i64,
                e.encode()?,
            ));
            fresh.push(StoredEvent::new(pos, e.clone()));
        }
        let result = s.session.batch(&batch, values).await.map_err(exec_err)?;
        if !applied(result)?.0 {
            // Someone appended first (or, after a crash between buckets,
            // the first part of this group is in: the retry finds it).
            return Ok(Err(mismatch(s, g).await?));
        }
        start = end;
    }
    Ok(Ok(fresh))
}

async fn mismatch(s: &ScyllaStore, g: &AppendGroup) -> Result<AppendConflict, StoreError> {
    let hint = read::user_stats(s, &g.user_id)
        .await?
        .map_or(0, |r| r.last_seq);
    let actual = read::journal_last(s, &g.user_id, hint).await?;
    Ok(AppendConflict::SeqMismatch {
        expected: g.expected_last_seq,
        actual,
    })
}

/// `[applied]` of a conditional statement, and the existing row's columns
/// (by name) when it was not applied.
fn applied(
    result: scylla::response::query_result::QueryResult,
) -> Result<(bool, BTreeMap<String, CqlValue>), StoreError> {
    let rows = result.into_rows_result().map_err(rows_err)?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let row: Row = rows.first_row().map_err(rows_err)?;
    let mut cols = BTreeMap::new();
    for (name, value) in names.into_iter().zip(row.columns) {
        if let Some(v) = value {
            cols.insert(name, v);
        }
    }
    match cols.get("[applied]") {
        Some(CqlValue::Boolean(b)) => Ok((*b, cols)),
        other => Err(StoreError::Corrupt(format!(
            "conditional write without [applied]: {other:?}"
        ))),
    }
}

/// Records a rejection once per command id; `Some(pos)` if new.
async fn reject(s: &ScyllaStore, r: &Rejection) -> Result<Option<u64>, StoreError> {
    let pos = s.positions(1);
    let day = day_num(r.rejected_at.date_naive());
    let result = s
        .session
        .execute_unpaged(
            &s.st.rejection_insert,
            (
                r.command_id.as_str(),
                day,
                r.reason.as_str(),
                r.detail.as_str(),
                micros(r.rejected_at),
                sub_micros(r.rejected_at),
                pos as i64,
            ),
        )
        .await
        .map_err(exec_err)?;
    let (new, existing) = applied(result)?;
    // Count it on the day first recorded (also repairs a crash between the
    // two writes of an earlier attempt).
    let day = match existing.get("day") {
        Some(CqlValue::Int(d)) if !new => *d,
        _ => day,
    };
    let id = r.command_id.as_str();
    futures::try_join!(
        s.session
            .execute_unpaged(&s.st.rejection_day_insert, (day, shard(id), id)),
        s.session.execute_unpaged(&s.st.day_insert, ("status", day)),
    )
    .map_err(exec_err)?;
    Ok(new.then_some(pos))
}

pub(super) type Exec<'a> = BoxFuture<'a, Result<(), StoreError>>;

/// One statement, its result dropped.
pub(super) fn exec<'a, V: SerializeRow + Send + Sync + 'a>(
    s: &'a ScyllaStore,
    st: &'a PreparedStatement,
    values: V,
) -> Exec<'a> {
    Box::pin(async move {
        s.session
            .execute_unpaged(st, values)
            .await
            .map(drop)
            .map_err(exec_err)
    })
}

/// Runs statements with bounded concurrency; the first error wins.
pub(super) async fn run_all(futs: Vec<Exec<'_>>) -> Result<(), StoreError> {
    futures::stream::iter(futs)
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}
