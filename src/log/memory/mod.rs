//! In-memory fakes of the command log ([`MemoryLog`]) and of the events
//! topic ([`MemorySink`]), for tests and for embedding the pipeline without
//! a disk or a broker. Nothing they hold survives the process.
//!
//! The log keeps the contract of the `log` module, and is no kinder than a
//! real log, so that a consumer tested against it is tested for
//! at-least-once delivery:
//! - records are delivered in append order within a partition (the
//!   partition of a key is [`partition_for`], as for the embedded log);
//! - an ack takes effect only at [`Acker::commit`]: a partition opened
//!   again (a consumer restart) delivers every record whose ack was not
//!   committed, and `redelivery_count` counts every earlier delivery;
//! - [`MemoryLog::reopen`] is the next process opening the same log: the
//!   records, the committed acks and the dead letters are kept, acks not
//!   committed are lost (a crash, unless [`CommandLog::close`] committed
//!   them first);
//! - dead letters are recorded ([`MemoryLog::dead_letters`]), and so is how
//!   many deliveries are unacknowledged ([`MemoryLog::outstanding`]), for
//!   tests to read.
//!
//! One mutex guards the whole log: a fake is read more than it is timed.

use crate::domain::position::partition_for;
use crate::log::{
    Acker, Appended, CommandLog, Delivery, EventSink, LogError, NewRecord, OutboundMessage,
    PartitionSource, Position,
};
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// A delivery handed to [`Acker::dead_letter`], with its reason and detail.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub delivery: Delivery,
    pub reason: String,
    pub detail: String,
}

struct Stored {
    record: NewRecord,
    published_at_ms: i64,
    /// How many times it was delivered (across reopens).
    deliveries: u32,
}

#[derive(Default)]
struct Part {
    records: Vec<Stored>,
    /// Offsets whose ack was committed: never delivered again.
    committed: BTreeSet<u64>,
    /// This process's deliveries not acked yet.
    outstanding: BTreeSet<u64>,
    /// This process's acks not committed yet.
    acked: BTreeSet<u64>,
    /// The most deliveries that were outstanding at once in this process.
    peak_outstanding: usize,
}

struct State {
    /// The process that has the log open; handles of earlier ones are dead.
    generation: u64,
    parts: Vec<Part>,
    dead_letters: Vec<DeadLetter>,
}

/// What every handle of one log shares (what a disk would hold, and the
/// current process's bookkeeping).
struct Shared {
    state: Mutex<State>,
    /// Bumped on every append: wakes waiting sources.
    appended: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section here panics half-way: a poisoned state is sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, if `generation` still has the log open.
    fn lock_as(&self, generation: u64) -> Result<MutexGuard<'_, State>, LogError> {
        let state = self.lock();
        if state.generation == generation {
            Ok(state)
        } else {
            Err(LogError::Closed)
        }
    }
}

/// The in-memory command log (see the module docs).
pub struct MemoryLog {
    partitions: u32,
    max_record_bytes: Option<usize>,
    generation: u64,
    shared: Arc<Shared>,
    /// Set by `close`, and by `reopen` for the handle it supersedes.
    closed: watch::Sender<bool>,
}

impl MemoryLog {
    /// An empty log of `partitions` partitions (at least one), without a
    /// record size limit.
    pub fn new(partitions: u32) -> Arc<MemoryLog> {
        Self::build(partitions, None)
    }

    /// An empty log that refuses records larger than `max_record_bytes`
    /// (counted as [`NewRecord::size`]) with [`LogError::TooLarge`].
    pub fn with_max_record_bytes(partitions: u32, max_record_bytes: usize) -> Arc<MemoryLog> {
        Self::build(partitions, Some(max_record_bytes))
    }

    fn build(partitions: u32, max_record_bytes: Option<usize>) -> Arc<MemoryLog> {
        let partitions = partitions.max(1);
        let state = State {
            generation: 0,
            parts: (0..partitions).map(|_| Part::default()).collect(),
            dead_letters: Vec::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            appended: watch::Sender::new(0),
        });
        Arc::new(Self::handle(partitions, max_record_bytes, 0, shared))
    }

    fn handle(
        partitions: u32,
        max_record_bytes: Option<usize>,
        generation: u64,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            partitions,
            max_record_bytes,
            generation,
            shared,
            closed: watch::Sender::new(false),
        }
    }

    /// The log as the next process opens it: records, committed acks and
    /// dead letters are kept; acks not committed are lost. This handle,
    /// its sources and ackers then answer [`LogError::Closed`].
    pub fn reopen(&self) -> Arc<MemoryLog> {
        let generation = {
            let mut state = self.shared.lock();
            state.generation += 1;
            for part in &mut state.parts {
                part.outstanding.clear();
                part.acked.clear();
                part.peak_outstanding = 0;
            }
            state.generation
        };
        self.closed.send_replace(true);
        Arc::new(Self::handle(
            self.partitions,
            self.max_record_bytes,
            generation,
            self.shared.clone(),
        ))
    }

    /// The offsets of `partition` whose ack was committed, ascending.
    pub fn committed(&self, partition: u32) -> Vec<u64> {
        self.part(partition, |p| p.committed.iter().copied().collect())
    }

    /// Deliveries of `partition` not acked yet in this process.
    pub fn outstanding(&self, partition: u32) -> usize {
        self.part(partition, |p| p.outstanding.len())
    }

    /// The most deliveries of `partition` that were outstanding at once in
    /// this process.
    pub fn peak_outstanding(&self, partition: u32) -> usize {
        self.part(partition, |p| p.peak_outstanding)
    }

    /// Every dead letter so far, in the order they were handed over.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.lock().dead_letters.clone()
    }

    fn part<T: Default>(&self, partition: u32, f: impl FnOnce(&Part) -> T) -> T {
        self.shared
            .lock()
            .parts
            .get(partition as usize)
            .map(f)
            .unwrap_or_default()
    }

    fn check_open(&self) -> Result<(), LogError> {
        if *self.closed.borrow() {
            return Err(LogError::Closed);
        }
        Ok(())
    }
}

impl Drop for MemoryLog {
    fn drop(&mut self) {
        // Wakes this handle's sources, as a dropped log would.
        self.closed.send_replace(true);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl CommandLog for MemoryLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    /// All records or none (a too large one refuses the whole append).
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        self.check_open()?;
        if let Some(max) = self.max_record_bytes {
            if let Some(size) = records.iter().map(NewRecord::size).find(|&s| s > max) {
                return Err(LogError::TooLarge(size));
            }
        }
        let appended = {
            let mut state = self.shared.lock_as(self.generation)?;
            let published_at_ms = now_ms();
            records
                .into_iter()
                .map(|record| {
                    let partition = partition_for(&record.key, self.partitions);
                    let part = &mut state.parts[partition as usize];
                    part.records.push(Stored {
                        record,
                        published_at_ms,
                        deliveries: 0,
                    });
                    Appended {
                        partition,
                        offset: part.records.len() as u64 - 1,
                    }
                })
                .collect()
        };
        self.shared.appended.send_modify(|n| *n += 1);
        Ok(appended)
    }

    /// The source starts at the first offset and skips committed ones.
    async fn open(
        &self,
        partition: u32,
    ) -> Result<(Box<dyn PartitionSource>, Arc<dyn Acker>), LogError> {
        if partition >= self.partitions {
            return Err(LogError::NoSuchPartition(partition));
        }
        self.check_open()?;
        let source = MemorySource {
            partition,
            next: 0,
            generation: self.generation,
            shared: self.shared.clone(),
            appended: self.shared.appended.subscribe(),
            closed: self.closed.subscribe(),
        };
        let acker = MemoryAcker {
            partition,
            generation: self.generation,
            shared: self.shared.clone(),
        };
        Ok((Box::new(source), Arc::new(acker)))
    }

    /// Commits every partition's acks and wakes sources with `Closed`.
    /// Idempotent.
    async fn close(&self) -> Result<(), LogError> {
        if let Ok(mut state) = self.shared.lock_as(self.generation) {
            for part in &mut state.parts {
                let acked = std::mem::take(&mut part.acked);
                part.committed.extend(acked);
            }
        }
        self.closed.send_replace(true);
        Ok(())
    }

    fn partition_of(&self, key: &str) -> u32 {
        partition_for(key, self.partitions)
    }

    /// The longest prefix of offsets acked in this process or committed.
    async fn acked_through(&self, partition: u32) -> Result<Option<Position>, LogError> {
        let state = self.shared.lock();
        let part = state
            .parts
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        let first_unacked = (0..part.records.len() as u64)
            .find(|o| !part.committed.contains(o) && !part.acked.contains(o))
            .unwrap_or(part.records.len() as u64);
        Ok(first_unacked
            .checked_sub(1)
            .map(|last| Position::end_of_entry(0, last)))
    }
}

struct MemorySource {
    partition: u32,
    /// The next offset to look at.
    next: u64,
    generation: u64,
    shared: Arc<Shared>,
    appended: watch::Receiver<u64>,
    closed: watch::Receiver<bool>,
}

impl MemorySource {
    /// Up to `max` records from `next` on, committed ones skipped.
    fn take(&mut self, max: usize) -> Result<Vec<Delivery>, LogError> {
        let mut state = self.shared.lock_as(self.generation)?;
        let p = self.partition;
        let part = &mut state.parts[p as usize];
        let mut out = Vec::new();
        while out.len() < max && self.next < part.records.len() as u64 {
            let offset = self.next;
            self.next += 1;
            if part.committed.contains(&offset) {
                continue;
            }
            let stored = &mut part.records[offset as usize];
            out.push(Delivery {
                partition: p,
                id: offset,
                key: Some(stored.record.key.clone()),
                payload: stored.record.payload.clone(),
                properties: stored.record.properties.clone(),
                published_at_ms: stored.published_at_ms,
                redelivery_count: stored.deliveries,
                identity: format!("memory:{p}:{offset}"),
                position: Position::new(0, offset, 0),
            });
            stored.deliveries += 1;
            part.outstanding.insert(offset);
        }
        part.peak_outstanding = part.peak_outstanding.max(part.outstanding.len());
        Ok(out)
    }
}

#[async_trait]
impl PartitionSource for MemorySource {
    /// Cancel-safe: nothing is taken unless it is returned.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, LogError> {
        loop {
            // Marked seen before looking, so a change after the look wakes us.
            self.appended.borrow_and_update();
            if *self.closed.borrow_and_update() {
                return Err(LogError::Closed);
            }
            let out = self.take(max.max(1))?;
            if !out.is_empty() {
                return Ok(out);
            }
            tokio::select! {
                r = self.appended.changed() => r.map_err(|_| LogError::Closed)?,
                r = self.closed.changed() => r.map_err(|_| LogError::Closed)?,
            }
        }
    }
}

struct MemoryAcker {
    partition: u32,
    generation: u64,
    shared: Arc<Shared>,
}

#[async_trait]
impl Acker for MemoryAcker {
    /// Acks of offsets not outstanding (never delivered, already acked or
    /// committed) are ignored.
    async fn ack(&self, ids: &[u64]) -> Result<(), LogError> {
        let mut state = self.shared.lock_as(self.generation)?;
        let part = &mut state.parts[self.partition as usize];
        for id in ids {
            if part.outstanding.remove(id) {
                part.acked.insert(*id);
            }
        }
        Ok(())
    }

    async fn commit(&self) -> Result<(), LogError> {
        let mut state = self.shared.lock_as(self.generation)?;
        let part = &mut state.parts[self.partition as usize];
        let acked = std::mem::take(&mut part.acked);
        part.committed.extend(acked);
        Ok(())
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        detail: &str,
    ) -> Result<(), LogError> {
        let mut state = self.shared.lock_as(self.generation)?;
        state.dead_letters.push(DeadLetter {
            delivery: delivery.clone(),
            reason: reason.to_owned(),
            detail: detail.to_owned(),
        });
        Ok(())
    }
}

/// An in-memory events topic: keeps what is published, in order, and can
/// be told to refuse the next publishes.
#[derive(Default)]
pub struct MemorySink {
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    published: Vec<OutboundMessage>,
    /// Publishes still to refuse.
    failures: u32,
}

impl MemorySink {
    pub fn new() -> Arc<MemorySink> {
        Arc::new(Self::default())
    }

    /// The next `n` publishes fail with [`LogError::Unavailable`] (retryable)
    /// and publish nothing.
    pub fn fail_next(&self, n: u32) {
        self.lock().failures = n;
    }

    /// Every message published so far, in order.
    pub fn published(&self) -> Vec<OutboundMessage> {
        self.lock().published.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl EventSink for MemorySink {
    async fn publish(&self, messages: Vec<OutboundMessage>) -> Result<(), LogError> {
        let mut state = self.lock();
        if state.failures > 0 {
            state.failures -= 1;
            return Err(LogError::Unavailable("injected publish failure".into()));
        }
        state.published.extend(messages);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
