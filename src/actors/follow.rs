//! Following the journal in position order: what the projectors and the
//! event publisher share.
//!
//! A follower remembers the last journal position it handled (its
//! checkpoint or cursor). The writer hands it committed records; records at
//! or below its position are skipped, a gap (records committed but never
//! received, e.g. while the actor was restarting) is filled from the journal
//! before going on, and a record is never skipped over. The same catch-up
//! runs at start and on every tick.

use crate::store::{EventStore, JournalRecord, StoreError};
use std::future::Future;
use std::sync::Arc;

pub trait Follower: Send {
    type Error: From<StoreError> + Send;
    /// Records read from the journal per catch-up step.
    const CHUNK: usize;

    fn store(&self) -> &Arc<dyn EventStore>;
    /// The last journal position handled.
    fn position(&self) -> u64;
    /// Handles records (ascending, right after `position()`) and moves the
    /// position to the last one.
    fn handle<'a>(
        &'a mut self,
        records: &'a [JournalRecord],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
}

/// Handles journal records after the position, up to `until` (inclusive).
pub async fn catch_up<F: Follower>(f: &mut F, until: u64) -> Result<(), F::Error> {
    loop {
        let records = f.store().scan(f.position(), F::CHUNK).await?;
        let full = records.len() == F::CHUNK;
        let records: Vec<JournalRecord> =
            records.into_iter().filter(|r| r.pos() <= until).collect();
        if records.is_empty() {
            return Ok(());
        }
        let whole = records.len() == F::CHUNK;
        f.handle(&records).await?;
        if !(full && whole) {
            return Ok(());
        }
    }
}

/// Handles committed records in position order, filling gaps from the
/// journal. Returns the last run of buffered records handled (for latency
/// metrics).
pub async fn handle_in_order<F: Follower>(
    f: &mut F,
    buffered: &[Arc<Vec<JournalRecord>>],
) -> Result<Vec<JournalRecord>, F::Error> {
    let mut fresh: Vec<JournalRecord> = Vec::new();
    for records in buffered {
        for r in records.iter() {
            let next = f.position() + fresh.len() as u64 + 1;
            if r.pos() < next {
                continue; // handled already
            }
            if r.pos() > next {
                // A gap: handle what we have, then the missing records
                // from the journal, before this one.
                if !fresh.is_empty() {
                    f.handle(&fresh).await?;
                    fresh.clear();
                }
                catch_up(f, r.pos() - 1).await?;
                if r.pos() != f.position() + 1 {
                    continue; // still a gap: the tick catches up
                }
            }
            fresh.push(r.clone());
        }
    }
    if !fresh.is_empty() {
        f.handle(&fresh).await?;
    }
    Ok(fresh)
}
