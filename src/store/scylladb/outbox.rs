//! The events-topic outbox of the ScyllaDB store (Pulsar mode): which users
//! have committed events not yet confirmed published, so that a worker
//! killed between its commit and the broker's receipt loses no publication
//! (at least once, like the embedded store's cursor).
//!
//! - before the journal append: `outbox(user) = seq` written `USING
//!   TIMESTAMP 2*seq` (seq = the commit's last);
//! - after the broker's receipt ([`mark`]): `user_published(user) = seq`
//!   (`USING TIMESTAMP seq`: only moves forward), then the outbox row is
//!   deleted `USING TIMESTAMP 2*seq`, which removes it only if no newer
//!   commit rewrote it (a tombstone shadows writes at or below its time);
//! - [`unpublished`]: rows older than a grace period whose user's journal
//!   is ahead of the published mark give the events to publish again.
//!
//! A row whose append lost a race (the seq was taken by another writer)
//! is removed once that seq is published; until then sweeps look at it and
//! find nothing to do.

use super::write::{exec, run_all, Exec};
use super::{read, rows_err, ScyllaStore};
use crate::store::{StoreError, StoredEvent};
use chrono::Utc;
use std::time::Duration;

/// Partitions of the outbox table.
const SHARDS: u32 = 16;

fn shard(user: &str) -> i32 {
    crate::log::embedded::partition_for(user, SHARDS) as i32
}

/// Records that `user` has events up to `seq` to publish (before they are
/// appended: a crash after the append always leaves the row).
pub async fn record(s: &ScyllaStore, user: &str, seq: u64) -> Result<(), StoreError> {
    let now = Utc::now().timestamp_micros();
    let ts = (seq as i64).saturating_mul(2);
    exec(
        s,
        &s.st.outbox_insert,
        (shard(user), user, seq as i64, now, ts),
    )
    .await
}

/// The users' events up to each seq reached the events topic.
pub async fn mark(s: &ScyllaStore, marks: &[(String, u64)]) -> Result<(), StoreError> {
    let puts: Vec<Exec<'_>> = marks
        .iter()
        .map(|(user, seq)| {
            exec(
                s,
                &s.st.published_put,
                (user.as_str(), *seq as i64, *seq as i64),
            )
        })
        .collect();
    run_all(puts).await?;
    let deletes: Vec<Exec<'_>> = marks
        .iter()
        .map(|(user, seq)| {
            let ts = (*seq as i64).saturating_mul(2);
            exec(s, &s.st.outbox_delete, (ts, shard(user), user.as_str()))
        })
        .collect();
    run_all(deletes).await
}

async fn published(s: &ScyllaStore, user: &str) -> Result<u64, StoreError> {
    let result = s
        .session
        .execute_unpaged(&s.st.published_get, (user,))
        .await
        .map_err(super::exec_err)?;
    let rows = result.into_rows_result().map_err(rows_err)?;
    let seq = rows
        .maybe_first_row::<(Option<i64>,)>()
        .map_err(rows_err)?
        .and_then(|r| r.0)
        .unwrap_or(0);
    Ok(seq.max(0) as u64)
}

/// Events of outbox rows older than `older_than` that are not published.
pub async fn unpublished(
    s: &ScyllaStore,
    older_than: Duration,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let cutoff = Utc::now().timestamp_micros() - older_than.as_micros() as i64;
    let mut out = Vec::new();
    for sh in 0..SHARDS as i32 {
        let want = limit.saturating_sub(out.len()).clamp(1, 10_000) as i32;
        let result = s
            .session
            .execute_unpaged(&s.st.outbox_scan, (sh, want))
            .await
            .map_err(super::exec_err)?;
        let rows = result.into_rows_result().map_err(rows_err)?;
        let rows: Vec<(String, Option<i64>, Option<i64>)> = rows
            .rows()
            .map_err(rows_err)?
            .collect::<Result<_, _>>()
            .map_err(rows_err)?;
        for (user, _seq, at) in rows {
            if at.unwrap_or(0) > cutoff {
                continue; // a commit may still be publishing it
            }
            let done = published(s, &user).await?;
            let last = read::journal_last(s, &user, done).await?;
            if last > done {
                out.extend(read::journal(s, &user, done, last, usize::MAX).await?);
            }
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}
