//! The command log: where interaction commands wait to be processed.
//!
//! Two small traits keep the actors independent of the transport:
//! [`CommandLog`] appends (the HTTP ingest path) and opens partitions;
//! a [`PartitionSource`] delivers records of one partition and takes acks.
//! The embedded implementation ([`embedded`]) is a durable partitioned log
//! on local disk; the Pulsar one slots in beside it; [`memory`] is an
//! in-memory fake for tests and embedding. The contract suite in
//! `contract` runs against the embedded log and the fake.
//!
//! Contract every implementation keeps (the consumer actor relies on it):
//! - a record appended and confirmed (`append` returned `Ok`) survives a
//!   crash of the process;
//! - a record is delivered again after a restart unless it was acked and the
//!   ack was committed (at-least-once);
//! - within a partition, records are delivered in append order.

#[cfg(test)]
mod contract;
pub mod embedded;
pub mod memory;
pub mod pulsar;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

/// Errors of the command log. `Io` and `Unavailable` are retryable (the
/// caller may try again later); `Closed` means shutdown, `Corrupt` needs an
/// operator.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("command log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("command log unavailable: {0}")]
    Unavailable(String),
    #[error("command log is closed")]
    Closed,
    #[error("command log corrupt: {0}")]
    Corrupt(String),
    #[error("record too large: {0} bytes")]
    TooLarge(usize),
    #[error("no such partition: {0}")]
    NoSuchPartition(u32),
}

impl LogError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Unavailable(_))
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The routing key (the user key); chooses the partition.
    pub key: String,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
}

impl NewRecord {
    /// A decoded command in the service's own encoding
    /// ([`crate::domain::codec::decided`]), keyed by its user: what is
    /// appended to a log whose [`CommandLog::holds_decided_commands`].
    pub fn decided(
        cmd: &crate::domain::TrackInteraction,
    ) -> Result<Self, rmp_serde::encode::Error> {
        Ok(Self {
            key: cmd.user_id.clone(),
            payload: crate::domain::codec::decided::encode(cmd)?,
            properties: HashMap::new(),
        })
    }

    /// The bytes it counts for against a log's record size limit: key,
    /// payload and properties.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.payload.len()
            + self
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub partition: u32,
    pub offset: u64,
}

pub use crate::domain::position::{Position, Source, BATCH_BITS};

/// One delivery of a record to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub partition: u32,
    /// Identifies this delivery to [`Acker::ack`]; unique and increasing
    /// within a partition source (the offset, for the embedded log).
    pub id: u64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
    /// Milliseconds since the epoch at which the record was appended.
    pub published_at_ms: i64,
    /// How many times this record was delivered before (0 the first time).
    /// The embedded and Pulsar logs keep a lower bound (deliveries of a
    /// process that crashed before committing may be forgotten); the
    /// memory log keeps the exact count.
    pub redelivery_count: u32,
    /// A stable identity of the record across redeliveries (for derived ids).
    pub identity: String,
    /// Where the record is in its partition (the same on every delivery).
    pub position: Position,
}

impl Delivery {
    pub fn source(&self) -> Source {
        Source {
            partition: self.partition,
            position: self.position,
        }
    }
}

/// Makes the store's records durable and reads its durable head (see
/// [`CommandLog::witness_store`]); blocking, called off the runtime. The
/// error says why the store could not be made durable.
pub type StoreHead = Arc<dyn Fn() -> Result<u64, String> + Send + Sync>;

/// The write side and the partition directory of a command log.
#[async_trait]
pub trait CommandLog: Send + Sync + 'static {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// Appends records; returns once they are durable (group-committed).
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, LogError>;

    /// Opens the source of one partition, positioned after the last
    /// committed ack (so unacked records are delivered again).
    async fn open(
        &self,
        partition: u32,
    ) -> Result<(Box<dyn PartitionSource>, Arc<dyn Acker>), LogError>;

    /// Flushes what can be flushed (committed acks, open files) at shutdown.
    async fn close(&self) -> Result<(), LogError>;

    /// An identity of this log that survives restarts, for logs that one
    /// process owns (the embedded log); `None` for a shared broker.
    fn instance(&self) -> Option<u64> {
        None
    }

    /// The partition a record keyed `key` is appended to (the log's own
    /// routing, which every producer of the log is expected to use).
    fn partition_of(&self, key: &str) -> u32;

    /// Has every later commit of consumed offsets call `head()` first,
    /// which makes the store durable, and record the store's durable head
    /// it returns beside them: a witness, kept outside the store, of how
    /// far the store had got when records were acknowledged for good. A
    /// commit whose `head()` fails is not made. Returns whether this log
    /// does so (then the store may defer its syncs to `head()`); logs
    /// that keep no such witness ignore it and return `false`.
    fn witness_store(&self, _head: StoreHead) -> bool {
        false
    }

    /// The highest store head witnessed by the commits found at open
    /// (`None`: this log keeps no witness, or none was recorded yet).
    fn witnessed_store_head(&self) -> Option<u64> {
        None
    }

    /// Whether only this service reads the log, so that it may hold
    /// commands already decoded, in the service's own encoding
    /// ([`NewRecord::decided`]) rather than as they came: the embedded
    /// log. A broker's topic other services read keeps the JSON.
    fn holds_decided_commands(&self) -> bool {
        false
    }

    /// Whether this open created the log (nothing of a previous one found).
    fn created_now(&self) -> bool {
        false
    }

    /// How far the partition is acknowledged by every consumer of it:
    /// every record at or below the returned position is (`None`: none
    /// yet). Followers of what the consumers committed read up to it.
    async fn acked_through(&self, partition: u32) -> Result<Option<Position>, LogError>;
}

/// The read side of one partition. Owned by one reader task.
#[async_trait]
pub trait PartitionSource: Send + 'static {
    /// Waits for the next records (at most `max`, at least one).
    /// Returns `Err(LogError::Closed)` once the log is closed.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, LogError>;
}

/// The ack side of one partition, shared with the consumer actor.
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    /// Marks deliveries as processed. Acks may arrive out of order; the
    /// implementation commits only what is safe (a contiguous prefix, for
    /// an offset-based log).
    async fn ack(&self, ids: &[u64]) -> Result<(), LogError>;

    /// Makes the acks so far durable, cheaply: called periodically by the
    /// consumer actor, so it must not wait long (an offset-based log writes
    /// its offset; a broker's acks are already on their way).
    async fn commit(&self) -> Result<(), LogError>;

    /// Waits until the acks so far are confirmed (at drain and stop). The
    /// default is [`Acker::commit`].
    async fn flush(&self) -> Result<(), LogError> {
        self.commit().await
    }

    /// Hands a delivery that will never succeed to the dead-letter
    /// destination, with the reason (a bounded label) and a human detail;
    /// the caller acks it afterwards. The embedded log has no dead-letter
    /// topic: its dead letters are the rejection records of the journal
    /// (status projection), so this does nothing there.
    async fn dead_letter(
        &self,
        _delivery: &Delivery,
        _reason: &str,
        _detail: &str,
    ) -> Result<(), LogError> {
        Ok(())
    }
}

/// A message for other services (the events topic).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub key: String,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
}

/// Where domain events go out, for other services to integrate with.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publishes the messages in order; returns once all are confirmed.
    async fn publish(&self, messages: Vec<OutboundMessage>) -> Result<(), LogError>;
}
