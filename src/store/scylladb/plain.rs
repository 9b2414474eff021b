//! Idempotent plain writes, sent as unlogged batches: several statements
//! per request.
//!
//! On Cassandra the native protocol's work per request (decoding the
//! request, dispatching it, encoding and flushing the response) was most of
//! the server's CPU per event, more than the reads, writes and Paxos rounds
//! themselves (BENCHMARKS.md, "Real stack"). So the writes of one commit
//! that need no order among them go together. They are unlogged batches:
//! not atomic, which these writes do not need (each is keyed by what it
//! indexes, or an absolute value with an explicit timestamp, so a retry or
//! a batch applied in part changes nothing). A batch holds at most
//! [`MAX_STATEMENTS`] statements: few partitions per batch (the server
//! warns past `unlogged_batch_across_partitions_warn_threshold`, 10) and a
//! few KiB (it warns past `batch_size_warn_threshold`, 5 KiB; an event's
//! index rows carry its ~300-byte encoding).

use super::write::{run_all, Exec};
use super::{exec_err, ScyllaStore};
use crate::store::StoreError;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

/// Statements per batch, at most.
pub const MAX_STATEMENTS: usize = 8;

type Row<'a> = Box<dyn SerializeRow + Send + Sync + 'a>;

/// Writes collected for one round of requests.
#[derive(Default)]
pub struct Plain<'a> {
    items: Vec<(&'a PreparedStatement, Row<'a>)>,
}

impl<'a> Plain<'a> {
    pub fn push<V: SerializeRow + Send + Sync + 'a>(
        &mut self,
        st: &'a PreparedStatement,
        values: V,
    ) {
        self.items.push((st, Box::new(values)));
    }

    /// Sends everything, [`MAX_STATEMENTS`] per request, the requests
    /// concurrently; the first error wins (nothing is known applied then).
    pub async fn run(self, s: &'a ScyllaStore) -> Result<(), StoreError> {
        let mut futs: Vec<Exec<'a>> = Vec::new();
        let mut items = self.items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items.by_ref().take(MAX_STATEMENTS).collect();
            futs.push(Box::pin(send(s, chunk)));
        }
        run_all(futs).await
    }
}

async fn send<'a>(
    s: &'a ScyllaStore,
    mut chunk: Vec<(&'a PreparedStatement, Row<'a>)>,
) -> Result<(), StoreError> {
    if chunk.len() == 1 {
        let Some((st, values)) = chunk.pop() else {
            return Ok(());
        };
        return s
            .session
            .execute_unpaged(st, values)
            .await
            .map(drop)
            .map_err(exec_err);
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    let mut values = Vec::with_capacity(chunk.len());
    for (st, v) in chunk {
        batch.append_statement(st.clone());
        values.push(v);
    }
    s.session
        .batch(&batch, values)
        .await
        .map(drop)
        .map_err(exec_err)
}
