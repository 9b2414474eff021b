//! The commit of the ScyllaDB store: no condition, no read of its own
//! (the head the user's view read is reused), only writes that anyone
//! deciding the same commands writes the same way.
//!
//! 1. The journal rows, in `log` (one per event or rejection, keyed by its
//!    command's place in the log), as single-partition batches per block;
//!    a block's listing row first, once per process.
//! 2. Then each user's rows: the head (last seq and state) and the id and
//!    key rows of what left it (`head.rs`), each `USING TIMESTAMP` of the
//!    seq it is as of; packed into multi-partition batches, one user's
//!    rows in one batch (one mutation) unless they are too big, then the
//!    head in a batch after the rest.
//!
//! The order is the argument: a journal row without the user's rows is a
//! commit cut short, which the command's redelivery finishes the same way
//! (the user's head does not show it, so the same decision is made); the
//! user's rows never exist without the journal row, so a duplicate found
//! in them was journaled. Nothing is acknowledged before step 2 is done.

use super::head::{id_row, key_row, UserHead};
use super::{event_pos, exec_err, micros, sub_micros, ScyllaStore, CONCURRENCY};
use crate::domain::position::{Position, Source};
use crate::store::{AppendGroup, GroupOutcome, Numbering, StoreError, WriteBatch, WriteOutcome};
use futures::{StreamExt, TryStreamExt};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::collections::BTreeMap;

/// Rows per journal batch and bytes per users batch: under the server's
/// `batch_size_fail_threshold` (50 KiB by default).
const LOG_ROWS_PER_BATCH: usize = 64;
const USER_BATCH_BYTES: usize = 24 * 1024;

/// The journal block of a position: 1,024 entries per partition.
pub(crate) fn block_of(p: Position) -> i64 {
    (p.minor >> (crate::domain::position::BATCH_BITS + 10)) as i64
}

/// One statement of a batch, its values, and about how many bytes they
/// take (to keep batches under the server's size limit).
struct Stmt {
    st: PreparedStatement,
    values: Box<dyn SerializeRow + Send + Sync>,
    bytes: usize,
}

/// Bytes a row takes besides its blobs and strings.
const ROW_OVERHEAD: usize = 64;

fn stmt<V: SerializeRow + Send + Sync + 'static>(
    st: &PreparedStatement,
    bytes: usize,
    values: V,
) -> Stmt {
    Stmt {
        st: st.clone(),
        values: Box::new(values),
        bytes: bytes + ROW_OVERHEAD,
    }
}

async fn run_batch(s: &ScyllaStore, stmts: Vec<Stmt>) -> Result<(), StoreError> {
    if let [one] = stmts.as_slice() {
        return s
            .session
            .execute_unpaged(&one.st, &one.values)
            .await
            .map(drop)
            .map_err(exec_err);
    }
    if stmts.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    let mut values = Vec::with_capacity(stmts.len());
    for s in stmts {
        batch.append_statement(s.st);
        values.push(s.values);
    }
    s.session
        .batch(&batch, values)
        .await
        .map(drop)
        .map_err(exec_err)
}

async fn run_batches(s: &ScyllaStore, batches: Vec<Vec<Stmt>>) -> Result<(), StoreError> {
    let futs: Vec<futures::future::BoxFuture<'_, Result<(), StoreError>>> = batches
        .into_iter()
        .map(|b| -> futures::future::BoxFuture<'_, _> { Box::pin(run_batch(s, b)) })
        .collect();
    futures::stream::iter(futs)
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}

fn source_of(g: &AppendGroup, k: usize) -> Result<Source, StoreError> {
    g.meta.get(k).map(|m| m.source).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "event {} of {} has no command-log position (this store needs one per event)",
            k, g.user_id
        ))
    })
}

pub async fn write(s: &ScyllaStore, batch: &WriteBatch) -> Result<WriteOutcome, StoreError> {
    if batch.rejection_sources.len() != batch.rejections.len() {
        return Err(StoreError::Corrupt(
            "every rejection needs its command-log position in this store".into(),
        ));
    }
    for g in &batch.groups {
        if g.numbering != Numbering::Expected {
            // Every writer of a user must write the same rows: the caller
            // decides the numbers (see `JournalGuard::Deterministic`).
            return Err(StoreError::Corrupt(format!(
                "group of {} asks the store to number it; this store writes groups as decided",
                g.user_id
            )));
        }
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
            source_of(g, k)?;
        }
    }
    // 1. The journal, by block.
    let mut blocks: BTreeMap<(i32, i64, i64), Vec<Stmt>> = BTreeMap::new();
    let mut first_pos = Vec::with_capacity(batch.groups.len());
    for g in &batch.groups {
        let mut first = None;
        for (k, e) in g.events.iter().enumerate() {
            let src = source_of(g, k)?;
            let key = (
                src.partition as i32,
                src.position.major as i64,
                block_of(src.position),
            );
            let first_of_key = g.meta[k].first_of_key;
            first.get_or_insert(event_pos(
                e.recorded_or_occurred(),
                src.partition,
                src.position.minor,
            ));
            let blob = e.encode()?;
            blocks.entry(key).or_default().push(stmt(
                &s.st.log_event_put,
                blob.len() + e.user_id.len(),
                (
                    key.0,
                    key.1,
                    key.2,
                    src.position.minor as i64,
                    e.user_id.clone(),
                    e.seq as i64,
                    first_of_key,
                    blob,
                ),
            ));
        }
        first_pos.push(first.unwrap_or(0));
    }
    let mut rejection_pos = Vec::with_capacity(batch.rejections.len());
    for (r, src) in batch.rejections.iter().zip(&batch.rejection_sources) {
        let key = (
            src.partition as i32,
            src.position.major as i64,
            block_of(src.position),
        );
        rejection_pos.push(Some(event_pos(
            r.rejected_at,
            src.partition,
            src.position.minor,
        )));
        blocks.entry(key).or_default().push(stmt(
            &s.st.log_rejection_put,
            r.command_id.len() + r.detail.len(),
            (
                key.0,
                key.1,
                key.2,
                src.position.minor as i64,
                r.command_id.clone(),
                r.reason.as_str(),
                r.detail.clone(),
                micros(r.rejected_at),
                sub_micros(r.rejected_at),
            ),
        ));
    }
    let listings: Vec<Stmt> = blocks
        .keys()
        .filter(|k| ScyllaStore::first_time(&s.blocks, **k))
        .map(|k| stmt(&s.st.block_put, 0, *k))
        .collect();
    // A block is listed before any of its rows exists: its rows are never
    // out of the followers' and the recount's sight.
    let listed: Vec<Vec<Stmt>> = listings.into_iter().map(|l| vec![l]).collect();
    run_batches(s, listed).await.inspect_err(|_| {
        if let Ok(mut b) = s.blocks.lock() {
            b.clear();
        }
    })?;
    let mut log_batches = Vec::new();
    for (_, rows) in blocks {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            log_batches.push(rows.by_ref().take(LOG_ROWS_PER_BATCH).collect());
        }
    }
    run_batches(s, log_batches).await?;
    #[cfg(test)]
    if s.crash_after_log.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(StoreError::Unavailable(
            "test: crashed after the journal rows".into(),
        ));
    }
    // 2. The users' rows, the head of each last.
    let mut current: Vec<Stmt> = Vec::new();
    let mut current_bytes = 0;
    let mut batches: Vec<Vec<Stmt>> = Vec::new();
    let mut heads_after: Vec<Vec<Stmt>> = Vec::new();
    for g in &batch.groups {
        let UserRows { mut rows, head } = user_rows(s, g).await?;
        let bytes: usize = rows.iter().chain(&head).map(|r| r.bytes).sum();
        if bytes > USER_BATCH_BYTES {
            // Too big for one batch: the rows first, the head after them.
            let mut chunk = Vec::new();
            let mut chunk_bytes = 0;
            for r in rows {
                if chunk_bytes + r.bytes > USER_BATCH_BYTES && !chunk.is_empty() {
                    batches.push(std::mem::take(&mut chunk));
                    chunk_bytes = 0;
                }
                chunk_bytes += r.bytes;
                chunk.push(r);
            }
            if !chunk.is_empty() {
                batches.push(chunk);
            }
            heads_after.extend(head.map(|h| vec![h]));
            continue;
        }
        if current_bytes + bytes > USER_BATCH_BYTES && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        rows.extend(head);
        current.extend(rows);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    run_batches(s, batches).await?;
    run_batches(s, heads_after).await?;
    Ok(WriteOutcome {
        groups: first_pos
            .into_iter()
            .zip(&batch.groups)
            .map(|(first_pos, g)| GroupOutcome::Appended {
                first_pos,
                first_seq: g.expected_last_seq + 1,
            })
            .collect(),
        rejections: rejection_pos,
    })
}

/// A group's user rows, and its head unless the stored one is as far.
struct UserRows {
    rows: Vec<Stmt>,
    head: Option<Stmt>,
}

async fn user_rows(s: &ScyllaStore, g: &AppendGroup) -> Result<UserRows, StoreError> {
    let mut rows = Vec::new();
    let Some(last) = g.events.last() else {
        return Ok(UserRows { rows, head: None });
    };
    // The head as of the last event: the one the view read, plus these
    // events. If the stored head has moved past `expected_last_seq` (the
    // same commands committed by another worker), its events up to there
    // are these events, and only those after it are added.
    let mut head = match s.known_heads.get(&g.user_id, g.expected_last_seq) {
        Some(h) => h,
        None => match super::view::head(s, &g.user_id).await? {
            Some((seq, h)) if seq >= g.expected_last_seq => UserHead::clone(&h),
            None if g.expected_last_seq == 0 => UserHead::default(),
            other => {
                return Err(StoreError::Unavailable(format!(
                    "the head of {} is at seq {}, behind the {} its view read (a replica behind?)",
                    g.user_id,
                    other.map_or(0, |(s, _)| s),
                    g.expected_last_seq
                )))
            }
        },
    };
    let before = head.last_seq();
    if before >= last.seq {
        // Whoever moved it that far wrote these events' rows too.
        return Ok(UserRows { rows, head: None });
    }
    for (k, e) in g.events.iter().enumerate().filter(|(_, e)| e.seq > before) {
        let evicted = head.apply(e, source_of(g, k)?, g.meta[k].first_of_key);
        // Rows of what left the head, as of this event's seq.
        let ts = e.seq as i64;
        if let Some(r) = evicted.event {
            rows.push(stmt(
                &s.st.id_row_put,
                e.user_id.len() + r.id.len(),
                (
                    e.user_id.clone(),
                    id_row(&r.id),
                    r.seq as i64,
                    r.partition as i32,
                    r.major as i64,
                    r.minor as i64,
                    ts,
                ),
            ));
        }
        for key in evicted.keys {
            let key = key_row(&key);
            rows.push(stmt(
                &s.st.key_row_put,
                e.user_id.len() + key.len(),
                (e.user_id.clone(), key, e.seq as i64, ts),
            ));
        }
    }
    let state = head.encode()?;
    let put = stmt(
        &s.st.head_put,
        state.len() + g.user_id.len(),
        (g.user_id.clone(), last.seq as i64, state, last.seq as i64),
    );
    s.known_heads.put(&g.user_id, head);
    Ok(UserRows {
        rows,
        head: Some(put),
    })
}
