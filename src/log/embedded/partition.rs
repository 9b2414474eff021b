//! One partition: shared state, recovery at open, the reading source and
//! the acker (with the committed-offsets file and retention).

use super::offsets::{read_offsets, write_offsets, Offsets};
use super::recover::recover_last;
use super::segment::{create_segment, decode_body, list_segments, segment_path, SegReader};
use super::writer::Writer;
use super::{blocking, corrupt, lock, sync_dir, EmbeddedLogOptions};
use crate::log::{Acker, Delivery, LogError, PartitionSource, StoreHead};
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Acked offsets above the committed one that a commit persists (so they
/// are not redelivered after a restart); beyond this, extra redeliveries.
const MAX_PERSISTED_ACKS: usize = 65_536;

/// What the writer has made durable, published on every group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Durable {
    /// One past the last durable offset (the high-water mark).
    pub next_offset: u64,
    /// The active segment and its durable length; bytes past it are not
    /// durable and are never read.
    pub seg_base: u64,
    pub seg_len: u64,
    pub closed: bool,
}

/// Consumer bookkeeping of a partition.
pub(super) struct AckState {
    /// First un-acked offset (the committed offset once persisted).
    pub prefix: u64,
    /// Acked offsets above `prefix`.
    pub above: BTreeSet<u64>,
    /// One past the highest offset delivered in this process.
    pub delivered_end: u64,
    /// One past the highest offset delivered before, per the offsets file.
    pub delivered_before: u64,
    /// The committed offset on disk.
    pub persisted: u64,
    /// Oldest offset the current source still has to read (retention floor).
    pub reader_floor: u64,
    /// Number of sources opened; only the latest moves `reader_floor`.
    pub sources: u64,
    /// Acks not yet persisted.
    pub dirty: bool,
}

pub(super) struct Shared {
    pub id: u32,
    /// The log's identity (see `check_meta`): the `major` of its positions.
    pub log_id: u64,
    pub dir: PathBuf,
    pub durable: watch::Sender<Durable>,
    /// Base offsets of the segments, ascending; the last one is active.
    pub segments: Mutex<Vec<u64>>,
    pub acks: Mutex<AckState>,
    pub commit_lock: tokio::sync::Mutex<()>,
    /// The store's durable head, recorded with every commit once set.
    pub witness: std::sync::OnceLock<StoreHead>,
    /// The store head the offsets file witnessed at open (0: none).
    pub witnessed: u64,
}

impl Shared {
    pub fn mark_closed(&self) {
        self.durable.send_modify(|d| d.closed = true);
    }
}

/// Opens (creating if needed) partition `id` under `root`: recovers the
/// active segment, loads the committed offset, and returns the writer to run.
pub(super) fn open_partition(
    root: &Path,
    id: u32,
    log_id: u64,
    opts: &EmbeddedLogOptions,
) -> Result<Writer, LogError> {
    let dir = root.join(format!("partition-{id}"));
    match fs::create_dir(&dir) {
        Ok(()) => sync_dir(root)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let mut segments = list_segments(&dir)?;
    if segments.is_empty() {
        create_segment(&dir, 0)?;
        segments.push(0);
    }
    let (first, base) = (segments[0], segments[segments.len() - 1]);
    let recovered = recover_last(&dir, base, opts.skip_damaged)?;
    let end = base + recovered.records;
    let Offsets {
        mut committed,
        delivered,
        witness: mut witnessed,
        mut acked,
    } = read_offsets(&dir)?.unwrap_or_default();
    if opts.replay_retained {
        // The operator accepted the store's loss: witness it afresh, and
        // deliver again whatever this partition still holds.
        witnessed = 0;
        if committed > first {
            tracing::warn!(
                partition = id,
                from = first,
                committed,
                "replaying the records the command log retains (--log-replay-retained): \
                 those already processed are found as duplicates"
            );
            (committed, acked) = (first, Vec::new());
        }
    }
    if committed < first || committed > end {
        return Err(corrupt(format!(
            "{}: committed offset {committed} is outside the stored records [{first}, {end})",
            dir.display()
        )));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(segment_path(&dir, base))?;
    file.seek(SeekFrom::Start(recovered.valid_len))?;
    let durable = Durable {
        next_offset: end,
        seg_base: base,
        seg_len: recovered.valid_len,
        closed: false,
    };
    let acks = AckState {
        prefix: committed,
        above: acked
            .into_iter()
            .filter(|&o| o > committed && o < end)
            .collect(),
        delivered_end: committed,
        delivered_before: delivered.clamp(committed, end),
        persisted: committed,
        reader_floor: committed,
        sources: 0,
        dirty: false,
    };
    let shared = Arc::new(Shared {
        id,
        log_id,
        dir,
        durable: watch::Sender::new(durable),
        segments: Mutex::new(segments),
        acks: Mutex::new(acks),
        commit_lock: tokio::sync::Mutex::new(()),
        witness: std::sync::OnceLock::new(),
        witnessed,
    });
    Ok(Writer {
        shared,
        file,
        seg_base: base,
        seg_len: recovered.valid_len,
        // Recovery cut the file to its data.
        zeroed_to: recovered.valid_len,
        next_offset: end,
        segment_bytes: opts.segment_bytes,
        max_batch_bytes: opts.max_batch_bytes,
        sync_interval: opts.sync_interval,
        last_group: None,
        buf: Vec::new(),
        failed: None,
    })
}

/// Persists the acks if they changed, then deletes segments that hold only
/// committed records (never the active one, never one the reader needs).
pub(super) async fn commit(shared: &Arc<Shared>) -> Result<(), LogError> {
    let _serial = shared.commit_lock.lock().await;
    let snapshot = {
        let mut s = lock(&shared.acks);
        let dirty = std::mem::replace(&mut s.dirty, false);
        dirty.then(|| {
            let acked: Vec<u64> = s.above.iter().take(MAX_PERSISTED_ACKS).copied().collect();
            (s.prefix, s.delivered_end.max(s.delivered_before), acked)
        })
    };
    if let Some((prefix, delivered, acked)) = snapshot {
        let dir = shared.dir.clone();
        let (store, witnessed) = (shared.witness.get().cloned(), shared.witnessed);
        let write = move || {
            // After the acks were taken: every acked record's effects are
            // written to the store by now, and made durable here before
            // the offsets that stop their redelivery. Never below what
            // was witnessed before.
            let witness = match store {
                Some(make_durable) => make_durable()
                    .map_err(|e| LogError::Unavailable(format!("the store is not durable: {e}")))?
                    .max(witnessed),
                None => witnessed,
            };
            Ok(write_offsets(&dir, prefix, delivered, witness, &acked)?)
        };
        if let Err(e) = blocking(write).await {
            lock(&shared.acks).dirty = true;
            return Err(e);
        }
        lock(&shared.acks).persisted = prefix;
    }
    let limit = {
        let s = lock(&shared.acks);
        s.persisted.min(s.reader_floor)
    };
    let doomed: Vec<u64> = {
        let mut segments = lock(&shared.segments);
        let n = (1..segments.len())
            .take_while(|&i| segments[i] <= limit)
            .count();
        segments.drain(..n).collect()
    };
    if !doomed.is_empty() {
        let dir = shared.dir.clone();
        blocking(move || {
            for base in doomed {
                if let Err(e) = fs::remove_file(segment_path(&dir, base)) {
                    tracing::warn!(segment = base, error = %e, "could not delete a consumed segment");
                }
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}

pub(super) struct PartitionAcker {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl Acker for PartitionAcker {
    async fn ack(&self, ids: &[u64]) -> Result<(), LogError> {
        let mut s = lock(&self.shared.acks);
        let mut unknown = 0usize;
        for &id in ids {
            if id < s.prefix {
                continue; // already covered
            }
            if id >= s.delivered_end {
                unknown += 1;
                continue;
            }
            s.dirty = true;
            if id == s.prefix {
                s.prefix += 1;
                while s.above.first() == Some(&s.prefix) {
                    s.above.pop_first();
                    s.prefix += 1;
                }
            } else {
                s.above.insert(id);
            }
        }
        if unknown > 0 {
            tracing::warn!(
                partition = self.shared.id,
                unknown,
                "ignored acks of offsets never delivered"
            );
        }
        Ok(())
    }

    async fn commit(&self) -> Result<(), LogError> {
        commit(&self.shared).await
    }
}

#[derive(Clone, Copy)]
pub(super) struct ReadPos {
    pub(super) next_offset: u64,
    /// Segment and byte position of `next_offset`, once known.
    pub(super) seg: Option<(u64, u64)>,
}

pub(super) struct Source {
    shared: Arc<Shared>,
    rx: watch::Receiver<Durable>,
    pos: ReadPos,
    /// Cached reader (lost if a `next_batch` is cancelled; then rebuilt).
    reader: Option<SegReader>,
    /// Offsets acked before this source opened: not delivered again.
    skip: BTreeSet<u64>,
    /// Offsets below this were delivered before: `redelivery_count` 1.
    redelivered_below: u64,
    /// Which source of the partition this is (see `AckState::sources`).
    generation: u64,
}

impl Source {
    pub fn new(shared: Arc<Shared>) -> Self {
        let (start, skip, redelivered_below, generation) = {
            let mut s = lock(&shared.acks);
            s.reader_floor = s.prefix;
            s.sources += 1;
            (
                s.prefix,
                s.above.clone(),
                s.delivered_end.max(s.delivered_before),
                s.sources,
            )
        };
        Self {
            rx: shared.durable.subscribe(),
            shared,
            pos: ReadPos {
                next_offset: start,
                seg: None,
            },
            reader: None,
            skip,
            redelivered_below,
            generation,
        }
    }
}

#[async_trait]
impl PartitionSource for Source {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, LogError> {
        loop {
            let mark = loop {
                let mark = *self.rx.borrow_and_update();
                if mark.closed {
                    return Err(LogError::Closed);
                }
                if self.pos.next_offset < mark.next_offset {
                    break mark;
                }
                self.rx.changed().await.map_err(|_| LogError::Closed)?;
            };
            let (shared, reader, pos) = (self.shared.clone(), self.reader.take(), self.pos);
            let (reader, pos, mut out) = if reads_tail(reader.as_ref().map(|r| r.base), pos, mark) {
                read_batch(&shared, reader, pos, mark, max.max(1))?
            } else {
                blocking(move || read_batch(&shared, reader, pos, mark, max.max(1))).await?
            };
            self.reader = Some(reader);
            self.pos = pos;
            {
                let mut s = lock(&self.shared.acks);
                s.delivered_end = s.delivered_end.max(pos.next_offset);
                if s.sources == self.generation {
                    s.reader_floor = pos.next_offset;
                }
            }
            if !self.skip.is_empty() {
                out.retain(|d| !self.skip.contains(&d.id));
                self.skip = self.skip.split_off(&pos.next_offset);
            }
            for d in &mut out {
                d.redelivery_count = u32::from(d.id < self.redelivered_below);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// Records behind the durable mark up to which a reader already open on
/// the active segment reads them on the runtime's thread: a hand-off to
/// the blocking pool (a thread woken, then the reader's task) costs more
/// than copying a few hundred KiB the log's writer has just put in the
/// page cache. A reader that must find its place, or a longer backlog
/// (after a restart, possibly on disk), reads on the blocking pool.
pub(super) const INLINE_TAIL: u64 = 2_048;

/// Whether the next read, by a reader open on the segment starting at
/// `reader` (if any), is of the tail just written (see [`INLINE_TAIL`]).
pub(super) fn reads_tail(reader: Option<u64>, pos: ReadPos, mark: Durable) -> bool {
    reader == Some(mark.seg_base) && mark.next_offset.saturating_sub(pos.next_offset) <= INLINE_TAIL
}

/// Reads up to `max` durable records from `pos` (blocking).
fn read_batch(
    shared: &Shared,
    reader: Option<SegReader>,
    mut pos: ReadPos,
    mark: Durable,
    max: usize,
) -> Result<(SegReader, ReadPos, Vec<Delivery>), LogError> {
    let mut reader = match reader {
        Some(r) => r,
        None => position(shared, pos, mark)?,
    };
    let wanted = usize::try_from(mark.next_offset - pos.next_offset).unwrap_or(max);
    let mut out = Vec::with_capacity(max.min(wanted));
    while out.len() < max && pos.next_offset < mark.next_offset {
        let limit = if reader.base == mark.seg_base {
            mark.seg_len
        } else {
            u64::MAX
        };
        match reader
            .next_frame(limit)
            .map_err(|e| e.into_log_error(&shared.dir, reader.base))?
        {
            Some(body) => {
                let r = decode_body(&reader.buf[body]).map_err(|e| {
                    corrupt(format!(
                        "partition {}: undecodable record {}: {e}",
                        shared.id, pos.next_offset
                    ))
                })?;
                if r.offset != pos.next_offset {
                    return Err(corrupt(format!(
                        "partition {}: found record {} where {} belongs",
                        shared.id, r.offset, pos.next_offset
                    )));
                }
                out.push(Delivery {
                    partition: shared.id,
                    id: r.offset,
                    key: (!r.key.is_empty()).then_some(r.key),
                    payload: r.payload,
                    properties: r.properties,
                    published_at_ms: r.published_at_ms,
                    redelivery_count: 0,
                    identity: format!("embedded:{}:{}", shared.id, r.offset),
                    position: crate::log::Position::new(shared.log_id, r.offset, 0),
                });
                pos.next_offset += 1;
            }
            None => {
                // End of a sealed segment: the next one starts here.
                let next = lock(&shared.segments)
                    .iter()
                    .copied()
                    .find(|&b| b > reader.base);
                if reader.base == mark.seg_base || next != Some(pos.next_offset) {
                    return Err(corrupt(format!(
                        "partition {}: segment {} ends before durable record {}",
                        shared.id, reader.base, pos.next_offset
                    )));
                }
                reader = SegReader::open(&shared.dir, pos.next_offset, 0)?;
            }
        }
    }
    pos.seg = Some((reader.base, reader.byte_pos()));
    Ok((reader, pos, out))
}

/// A reader positioned at `pos`: where the last one stopped, or found by
/// scanning the segment holding `pos.next_offset`.
fn position(shared: &Shared, pos: ReadPos, mark: Durable) -> Result<SegReader, LogError> {
    if let Some((base, byte)) = pos.seg {
        match SegReader::open(&shared.dir, base, byte) {
            Ok(r) => return Ok(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // retention removed it
            Err(e) => return Err(e.into()),
        }
    }
    let offset = pos.next_offset;
    let base = lock(&shared.segments)
        .iter()
        .rev()
        .copied()
        .find(|&b| b <= offset);
    let base = base.ok_or_else(|| {
        corrupt(format!(
            "partition {}: offset {offset} is older than every segment",
            shared.id
        ))
    })?;
    let mut reader = SegReader::open(&shared.dir, base, 0)?;
    let limit = if base == mark.seg_base {
        mark.seg_len
    } else {
        u64::MAX
    };
    for at in base..offset {
        match reader
            .next_frame(limit)
            .map_err(|e| e.into_log_error(&shared.dir, base))?
        {
            Some(_) => {}
            None => {
                return Err(corrupt(format!(
                    "partition {}: segment {base} ends at {at}, before offset {offset}",
                    shared.id
                )))
            }
        }
    }
    Ok(reader)
}
