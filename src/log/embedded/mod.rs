//! The embedded command log: a durable, partitioned, append-only log on
//! local disk, used when no Pulsar broker is configured.
//!
//! # Layout
//! ```text
//! <dir>/LOCK                    flock'ed while a process has the log open
//! <dir>/meta                    "partitions=<n>" (fixed at creation)
//! <dir>/partition-<p>/<base>.seg   segments, named by their first offset (20 digits)
//! <dir>/partition-<p>/offsets   committed offset + acks above it (consumer)
//! ```
//! A key goes to partition `fnv1a64(key) % n` ([`partition_for`]); the
//! partition count is recorded in `meta` and a different count is refused,
//! since it would reroute users to other partitions (and actors).
//!
//! # Writing: group commit
//! Each partition has one writer thread (blocking file I/O stays off the
//! async runtime). `append` splits its records by partition and sends one
//! request per partition over a bounded channel. The writer takes every
//! queued request (up to a byte/count cap), assigns contiguous offsets,
//! frames the records into one buffer (`[len][crc32][msgpack body]`),
//! issues one `write` and one `fdatasync`, then answers every request and
//! publishes the durable mark (offset, active segment, its durable length)
//! on a `watch` channel. A group starts no sooner than `sync_interval`
//! after the previous one (see `writer`): a partition syncs at most once
//! per interval, and a request waits at most that long for its group. A
//! segment is sealed (fsynced) and a new one started before a group that
//! would push it past `segment_bytes`, so a segment always holds whole
//! groups.
//!
//! # Reading and acking
//! A [`PartitionSource`] waits on the watch channel and reads only below
//! the durable mark (never buffering bytes past it): the tail just
//! written on the runtime's thread, anything else on a blocking thread
//! (`partition::INLINE_TAIL` says why).
//! Acks may come out of order: the committed offset is the first un-acked
//! one, acked offsets above it sit in a `BTreeSet` (O(log n) per ack).
//! `commit` persists both (the set is capped) with tmp + fsync + rename +
//! dir fsync, then deletes segments that hold only committed records and
//! that the reader no longer needs (never the active one). Reopening a
//! source restarts at the committed offset and skips records already acked.
//! `redelivery_count` is 1 for records known to be delivered before (in
//! this process, or before the last commit of a previous one) and 0
//! otherwise: deliveries after the last commit of a crashed process are
//! not recorded, so the count is a lower bound.
//!
//! # Crash safety
//! - `append` returns only after the `fdatasync` covering its records, so
//!   a confirmed record survives a crash; a failed write is cut off again
//!   (or the partition goes out of service), a failed fsync takes the
//!   partition out of service until restart (the page cache can no longer
//!   be trusted).
//! - Every group is synced before the next is written, and segments are
//!   sealed with an fsync before the next is created. So after a crash,
//!   damage is confined to the tail of the last segment, written after its
//!   last successful fsync: recovery keeps the longest prefix of sound
//!   frames (length, CRC, decodable, expected offset) and truncates the
//!   rest. A damaged frame met later while reading is reported as
//!   [`LogError::Corrupt`]: that is not a torn write but a damaged disk.
//! - The offsets file is replaced atomically, and segments are deleted only
//!   below the offset already persisted, so the committed offset always
//!   points into stored records.
//! - A commit persists only acked offsets, so every record not acked and
//!   committed is delivered again after a restart (at-least-once).

mod offsets;
mod partition;
mod recover;
pub(crate) mod segment;
#[cfg(test)]
mod tests;
mod writer;

use crate::log::{Acker, Appended, CommandLog, LogError, NewRecord, PartitionSource, Position};
use async_trait::async_trait;
use partition::{open_partition, PartitionAcker, Shared, Source};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::WriterMsg;

/// The default least time between two syncs of a partition: under load,
/// 500 syncs per second per partition instead of as many as the disk
/// takes, for at most 2 ms more before a request is confirmed.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(2);

/// How long an open waits for the directory's lock before it refuses
/// (`LogError::Unavailable`), polling every `LOCK_POLL`. The lock of an
/// instance that has just closed can outlive it for a moment: a child
/// process spawned meanwhile (by this process, or by a test harness
/// running tests side by side) holds a copy of the lock's descriptor until
/// it executes its program. An instance that is really open holds it for
/// longer than this.
const LOCK_WAIT: Duration = Duration::from_secs(1);
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Tuning of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedLogOptions {
    /// A new segment is started before a write group that would make the
    /// active one larger than this (default 64 MiB).
    pub segment_bytes: u64,
    /// Largest record accepted (key + payload + properties; default 1 MiB).
    pub max_record_bytes: usize,
    /// A write group stops taking requests past this many bytes (default 1 MiB:
    /// thousands of commands per fsync, and little memory held per partition).
    pub max_batch_bytes: usize,
    /// Append requests queued per partition before `append` waits (default 1024).
    pub queue_depth: usize,
    /// Least time between the starts of two write groups of a partition,
    /// so at most one `fdatasync` per interval (default
    /// [`DEFAULT_SYNC_INTERVAL`]; zero: as soon as the previous sync ends).
    pub sync_interval: Duration,
    /// At open, keep the sound records found after damaged ones and skip
    /// the damaged ones (each delivered as a marker the pipeline rejects),
    /// instead of refusing to open (default: refuse). See `recover`.
    pub skip_damaged: bool,
    /// At open, move every partition's committed offset back to its first
    /// retained record, so that what the log still holds is delivered
    /// again (after a store lost acknowledged data; the records it still
    /// has are found as duplicates).
    pub replay_retained: bool,
}

impl Default for EmbeddedLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            max_batch_bytes: 1 << 20,
            queue_depth: 1024,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            skip_damaged: false,
            replay_retained: false,
        }
    }
}

pub use crate::domain::position::partition_for;

struct Part {
    shared: Arc<Shared>,
    tx: mpsc::Sender<WriterMsg>,
    acker: Arc<PartitionAcker>,
}

/// The embedded log (see the module docs). Dropping it without
/// [`CommandLog::close`] is like a crash: confirmed records are kept, acks
/// not committed are lost (those records are delivered again).
pub struct EmbeddedLog {
    dir: PathBuf,
    /// When the log was created (its identity, see `check_meta`).
    log_id: u64,
    partitions: u32,
    max_record_bytes: usize,
    parts: Vec<Part>,
    closed: AtomicBool,
    /// Holds the directory lock while open.
    /// Whether this open created the log.
    created_now: bool,
    _lock: File,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir` with default options.
    /// Async because recovery reads files: it runs on a blocking thread.
    pub async fn open(dir: &Path, partitions: u32) -> Result<Arc<EmbeddedLog>, LogError> {
        Self::open_with(dir, partitions, EmbeddedLogOptions::default()).await
    }

    /// Opens the log with explicit options. Fails with `Corrupt` if `dir`
    /// holds a log with another partition count or damaged files, and with
    /// `Unavailable` if another instance has it open.
    pub async fn open_with(
        dir: &Path,
        partitions: u32,
        options: EmbeddedLogOptions,
    ) -> Result<Arc<EmbeddedLog>, LogError> {
        let dir = dir.to_path_buf();
        blocking(move || Self::open_blocking(dir, partitions, options))
            .await
            .map(Arc::new)
    }

    fn open_blocking(
        dir: PathBuf,
        partitions: u32,
        options: EmbeddedLogOptions,
    ) -> Result<Self, LogError> {
        if partitions == 0
            || options.segment_bytes == 0
            || options.max_record_bytes == 0
            || options.max_record_bytes > 256 << 20
            || options.max_batch_bytes == 0
            || options.queue_depth == 0
        {
            return Err(corrupt(format!(
                "invalid configuration: {partitions} partitions, {options:?} (all must be positive, records at most 256 MiB)"
            )));
        }
        fs::create_dir_all(&dir)?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match lock_file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(LogError::Unavailable(format!(
                        "{} is in use by another command log instance",
                        dir.display()
                    )))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        let created_now = !dir.join("meta").exists();
        let log_id = check_meta(&dir, partitions)?;
        let mut parts = Vec::with_capacity(partitions as usize);
        for id in 0..partitions {
            let writer = open_partition(&dir, id, log_id, &options)?;
            let shared = writer.shared.clone();
            let (tx, rx) = mpsc::channel(options.queue_depth);
            writer.spawn(rx)?;
            let acker = Arc::new(PartitionAcker {
                shared: shared.clone(),
            });
            parts.push(Part { shared, tx, acker });
        }
        tracing::info!(dir = %dir.display(), partitions, "embedded command log open");
        Ok(Self {
            dir,
            log_id,
            partitions,
            max_record_bytes: options.max_record_bytes,
            parts,
            closed: AtomicBool::new(false),
            created_now,
            _lock: lock_file,
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed (persisted) offset of a partition.
    pub fn committed_offset(&self, partition: u32) -> Option<u64> {
        let part = self.parts.get(partition as usize)?;
        Some(lock(&part.shared.acks).persisted)
    }

    /// One past the last durable offset of a partition.
    pub fn high_water_mark(&self, partition: u32) -> Option<u64> {
        let part = self.parts.get(partition as usize)?;
        Some(part.shared.durable.borrow().next_offset)
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Wake readers; the writers stop once their channels are dropped.
        for part in &self.parts {
            part.shared.mark_closed();
        }
    }
}

#[async_trait]
impl CommandLog for EmbeddedLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    /// All records or an error; on error some partitions' records may have
    /// been stored anyway (the caller retries: at-least-once).
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let n = self.parts.len();
        let mut groups: Vec<(Vec<NewRecord>, usize)> = (0..n).map(|_| (Vec::new(), 0)).collect();
        let mut slots = Vec::with_capacity(records.len());
        for record in records {
            let size = record.size();
            if size > self.max_record_bytes {
                return Err(LogError::TooLarge(size));
            }
            let p = partition_for(&record.key, self.partitions) as usize;
            let group = &mut groups[p];
            slots.push((p, group.0.len() as u64));
            group.0.push(record);
            group.1 += size;
        }
        let mut pending = Vec::new();
        for (p, (records, bytes)) in groups.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let msg = WriterMsg::Append {
                records,
                bytes,
                reply,
            };
            self.parts[p]
                .tx
                .send(msg)
                .await
                .map_err(|_| LogError::Closed)?;
            pending.push((p, rx));
        }
        let mut firsts = vec![0u64; n];
        let mut error = None;
        for (p, rx) in pending {
            match rx.await {
                Ok(Ok(first)) => firsts[p] = first,
                Ok(Err(e)) => error = error.or(Some(e)),
                Err(_) => error = error.or(Some(LogError::Closed)),
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        Ok(slots
            .into_iter()
            .map(|(p, i)| Appended {
                partition: p as u32,
                offset: firsts[p] + i,
            })
            .collect())
    }

    /// The source starts at the committed offset and skips records already
    /// acked. Meant for one live source per partition: opening again (a
    /// consumer restart) supersedes the previous source, which should be
    /// dropped (it keeps reading, but retention no longer waits for it).
    async fn open(
        &self,
        partition: u32,
    ) -> Result<(Box<dyn PartitionSource>, Arc<dyn Acker>), LogError> {
        let part = self
            .parts
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let source = Source::new(part.shared.clone());
        Ok((Box::new(source), part.acker.clone()))
    }

    /// Writes what is queued, stops the writers, wakes readers with
    /// `Closed` and commits every partition's acks. Idempotent.
    fn partition_of(&self, key: &str) -> u32 {
        partition_for(key, self.partitions)
    }

    fn witness_store(&self, head: crate::log::StoreHead) -> bool {
        for part in &self.parts {
            let _ = part.shared.witness.set(head.clone());
        }
        true
    }

    fn witnessed_store_head(&self) -> Option<u64> {
        let most = self.parts.iter().map(|p| p.shared.witnessed).max()?;
        (most > 0).then_some(most)
    }

    fn created_now(&self) -> bool {
        self.created_now
    }

    /// Only this process reads its files.
    fn holds_decided_commands(&self) -> bool {
        true
    }

    fn instance(&self) -> Option<u64> {
        Some(self.log_id)
    }

    /// The first offset not acknowledged in this process is the bound:
    /// every record below it is acknowledged (after a restart it starts
    /// again from the committed offset, a little lower: followers wait).
    async fn acked_through(&self, partition: u32) -> Result<Option<Position>, LogError> {
        let part = self
            .parts
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        let first_unacked = lock(&part.shared.acks).prefix;
        Ok(first_unacked
            .checked_sub(1)
            .map(|last| Position::end_of_entry(part.shared.log_id, last)))
    }

    async fn close(&self) -> Result<(), LogError> {
        self.closed.store(true, Ordering::Release);
        for part in &self.parts {
            let (done, stopped) = oneshot::channel();
            if part.tx.send(WriterMsg::Shutdown(done)).await.is_ok() {
                let _ = stopped.await;
            }
        }
        let mut result = Ok(());
        for part in &self.parts {
            part.shared.mark_closed();
            if let Err(e) = partition::commit(&part.shared).await {
                tracing::error!(partition = part.shared.id, error = %e, "commit at close failed");
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// Checks (or, for a new log, writes) the partition count in `meta`.
/// Checks (or, for a new log, writes) the meta file: the partition count,
/// and the log's identity, the millisecond it was created: the `major` of
/// its positions, so that a newer log's records sort after an older one's
/// (a store that keeps records by log position never confuses them). A
/// log from before the identity existed gets one now.
/// The partition count of the log in `dir`, if one was created there.
pub fn existing_partitions(dir: &Path) -> Result<Option<u32>, LogError> {
    match fs::read_to_string(dir.join("meta")) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("partitions="))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(Some)
            .ok_or_else(|| {
                corrupt(format!(
                    "{}: unreadable meta file",
                    dir.join("meta").display()
                ))
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn check_meta(dir: &Path, partitions: u32) -> Result<u64, LogError> {
    let path = dir.join("meta");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("partitions="))
                .and_then(|v| v.trim().parse::<u32>().ok());
            let created = text
                .lines()
                .find_map(|l| l.strip_prefix("created_ms="))
                .and_then(|v| v.trim().parse::<u64>().ok());
            match found {
                Some(found) if found == partitions => match created {
                    Some(id) => Ok(id),
                    None => {
                        let id = now_ms().max(1) as u64;
                        let text = format!("{}created_ms={id}\n", text.trim_end().to_owned() + "\n");
                        write_atomic(dir, "meta", text.as_bytes())?;
                        Ok(id)
                    }
                },
                Some(found) => Err(corrupt(format!(
                    "{} holds a command log with {found} partitions but {partitions} are configured; \
                     changing the count would move keys to other partitions, so it is refused \
                     (configure {found}, or start from a new directory)",
                    dir.display()
                ))),
                None => Err(corrupt(format!("{}: unreadable meta file", path.display()))),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            for entry in fs::read_dir(dir)? {
                if entry?
                    .file_name()
                    .to_string_lossy()
                    .starts_with("partition-")
                {
                    return Err(corrupt(format!(
                        "{} holds partitions but no meta file; refusing to guess their count",
                        dir.display()
                    )));
                }
            }
            let id = now_ms().max(1) as u64;
            let text = format!(
                "# alpes-tracking embedded command log\npartitions={partitions}\ncreated_ms={id}\n"
            );
            write_atomic(dir, "meta", text.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

fn corrupt(msg: String) -> LogError {
    LogError::Corrupt(msg)
}

/// Replaces `dir/name` atomically and durably.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes directory entries (created, renamed files) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Locks a mutex; a poisoned one is still consistent (no critical section
/// here can panic half-way), so its data is used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Io(io::Error::other(format!("blocking task failed: {e}"))))?
}
