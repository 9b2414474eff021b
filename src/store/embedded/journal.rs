//! The embedded store's journal: every event and rejection, written once,
//! in position order, to append-only segment files. It is the store's
//! only durable write; everything in the LSM (indexes, projections) is
//! derived from it and can be derived again. A commit's frames are made
//! durable with it, or, when the store defers syncs, at the next
//! [`Journal::sync`] (see the parent's "Crash safety").
//!
//! A frame is `[u32 len LE][u32 crc32 LE of body][body]`, the body
//! `[u64 pos BE][u8 tag][payload]` (tag `0x03`: an event, compact; `0x01`:
//! an event, rmp-serde named, as older journals hold them; `0x02`: a
//! rejection). The position in the body makes misplaced data
//! detectable. A segment is named by the first position it holds
//! (`<20 digits>.seg`) and closed at [`SEGMENT_BYTES`] (synced whole);
//! a commit's frames are one `write`, so after a crash only what was
//! written since the last `fdatasync` can be in part, at the end of the
//! last segment. [`Journal::open`] cuts such a tail off (it was never
//! acknowledged) and refuses any other damage. The last segment is kept zeroed ahead of its data
//! ([`crate::segfile`]: a commit's sync then writes the data alone); the
//! zeros are cut off at open, at shutdown and when the segment is closed.

use crate::segfile;
use crate::store::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Bytes of the frame header.
const HEADER: usize = 8;
/// Bytes of the body before the payload (position, tag).
const BODY_HEAD: usize = 9;
/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
/// No frame is this large; a bigger length field is damage.
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Read-ahead of the sequential reader.
const CHUNK: usize = 256 * 1024;

/// Where a record's frame is: its segment, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u32,
    pub len: u32,
}

impl Location {
    pub const BYTES: usize = 16;

    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Location> {
        let b: &[u8; Self::BYTES] = b.try_into().ok()?;
        Some(Location {
            segment: u64::from_be_bytes(b[..8].try_into().ok()?),
            offset: u32::from_be_bytes(b[8..12].try_into().ok()?),
            len: u32::from_be_bytes(b[12..].try_into().ok()?),
        })
    }

    /// The offset just past this frame.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.len)
    }
}

/// One record read back: its position, tag and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pos: u64,
    pub tag: u8,
    pub payload: Vec<u8>,
}

/// Frames of one commit, encoded before they are appended.
#[derive(Default)]
pub struct Pending {
    buf: Vec<u8>,
    /// (position, offset in `buf`, length) per frame.
    frames: Vec<(u64, u32, u32)>,
}

impl Pending {
    pub fn with_capacity(bytes: usize, frames: usize) -> Self {
        Pending {
            buf: Vec::with_capacity(bytes),
            frames: Vec::with_capacity(frames),
        }
    }

    /// Adds a frame; `fill` writes its payload.
    pub fn push(
        &mut self,
        pos: u64,
        tag: u8,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        self.buf.extend_from_slice(&pos.to_be_bytes());
        self.buf.push(tag);
        if let Err(e) = fill(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let body = &self.buf[start + HEADER..];
        let too_big = || StoreError::Corrupt(format!("journal record of {} bytes", body.len()));
        if body.len() > MAX_FRAME {
            return Err(too_big());
        }
        let len = u32::try_from(body.len()).map_err(|_| too_big())?;
        let crc = crc32fast::hash(body);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        let frame_len = (self.buf.len() - start) as u32;
        self.frames.push((pos, start as u32, frame_len));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }
}

/// The journal's files. Appends are serialized by the store's writer
/// lock (the segment being written has its own, never contended); reads
/// go through shared file handles.
pub struct Journal {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Read handles, by segment base.
    readers: RwLock<Vec<(u64, Arc<File>)>>,
    /// The last position whose frame is durable (fdatasynced).
    synced: AtomicU64,
}

/// The segment being written.
struct Active {
    file: File,
    base: u64,
    /// End of the frames written.
    len: u64,
    /// End of the zeros written ahead of `len` (the file's length).
    zeroed_to: u64,
    /// The last position written (0: none).
    last_pos: u64,
}

fn io_err(what: &str, e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal {what}: {e}"))
}

/// A segment's file, named by its first position (the command log's
/// segments are named alike; the layers keep the two apart).
fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// The segments' first positions, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".seg")?
                .parse()
                .ok()
        })
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Decodes the frame at the start of `buf`: `None` if `buf` holds no
/// whole, valid frame (a torn or damaged one).
fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..HEADER)?.try_into().ok()?);
    if !(BODY_HEAD..=MAX_FRAME).contains(&len) {
        return None;
    }
    let body = buf.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let pos = u64::from_be_bytes(body[..8].try_into().ok()?);
    let frame = Frame {
        pos,
        tag: body[8],
        payload: body[BODY_HEAD..].to_vec(),
    };
    Some((frame, HEADER + len))
}

/// Reads a segment's frames from `offset` in order.
pub struct SegmentReader {
    file: File,
    base: u64,
    buf: Vec<u8>,
    at: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
}

impl SegmentReader {
    fn open(dir: &Path, base: u64, offset: u64) -> io::Result<Self> {
        Ok(SegmentReader {
            file: File::open(segment_path(dir, base))?,
            base,
            buf: Vec::new(),
            at: 0,
            buf_offset: offset,
            eof: false,
        })
    }

    /// The offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.buf_offset + self.at as u64
    }

    /// The next frame and its location; `Ok(None)` at the end of valid
    /// data (the end of the file, or a frame that is not whole and valid).
    pub fn next_frame(&mut self) -> io::Result<Option<(Frame, Location)>> {
        loop {
            if let Some((frame, n)) = decode_frame(&self.buf[self.at..]) {
                let loc = Location {
                    segment: self.base,
                    offset: self.offset() as u32,
                    len: n as u32,
                };
                self.at += n;
                return Ok(Some((frame, loc)));
            }
            if self.eof {
                return Ok(None);
            }
            // Keep the unread tail, read more behind it.
            self.buf_offset += self.at as u64;
            self.buf.drain(..self.at);
            self.at = 0;
            let have = self.buf.len();
            let want = CHUNK.max(self.frame_len_hint());
            self.buf.resize(have + want, 0);
            let n = self
                .file
                .read_at(&mut self.buf[have..], self.buf_offset + have as u64)?;
            self.buf.truncate(have + n);
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// The length of the frame at the read point, if its header is there.
    fn frame_len_hint(&self) -> usize {
        self.buf
            .get(self.at..self.at + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b| (u32::from_le_bytes(b) as usize).min(MAX_FRAME) + HEADER)
            .unwrap_or(0)
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, cutting off a torn last
    /// commit. Returns it and the last position it holds (0: empty).
    pub fn open(dir: &Path) -> Result<(Journal, u64), StoreError> {
        fs::create_dir_all(dir).map_err(|e| io_err("directory", e))?;
        let mut bases = list_segments(dir).map_err(|e| io_err("listing", e))?;
        if bases.is_empty() {
            let file = Self::create(dir, 1)?;
            bases.push(1);
            drop(file);
        }
        let mut head = 0;
        // Only the last segment can end in a torn commit; the one before
        // it must end exactly at its last whole frame.
        for (i, base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            if !last && i + 2 < bases.len() {
                continue; // older segments are read when needed
            }
            let mut r = SegmentReader::open(dir, *base, 0).map_err(|e| io_err("reading", e))?;
            let mut expect = *base;
            while let Some((f, _)) = r.next_frame().map_err(|e| io_err("reading", e))? {
                if f.pos != expect {
                    return Err(StoreError::Corrupt(format!(
                        "journal segment {base}: position {} where {expect} was expected",
                        f.pos
                    )));
                }
                expect += 1;
                head = f.pos;
            }
            let len = fs::metadata(segment_path(dir, *base))
                .map_err(|e| io_err("reading", e))?
                .len();
            let valid = r.offset();
            if valid < len {
                if !last {
                    return Err(StoreError::Corrupt(format!(
                        "journal segment {base} is damaged at byte {valid} of {len}"
                    )));
                }
                // The zeros written ahead are no damage: only what ends
                // with the last byte that is not zero is.
                let torn = segfile::data_end(&r.file, valid, len)
                    .map_err(|e| io_err("reading", e))?
                    - valid;
                if torn > MAX_FRAME as u64 * 4 {
                    return Err(StoreError::Corrupt(format!(
                        "journal segment {base}: {torn} bytes of damage after byte {valid}, more than one commit"
                    )));
                }
                if torn > 0 {
                    tracing::warn!(
                        segment = base,
                        bytes = torn,
                        "journal: an unfinished last commit is cut off (it was never acknowledged)"
                    );
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, *base))
                    .map_err(|e| io_err("truncating", e))?;
                segfile::cut_to(&f, valid).map_err(|e| io_err("truncating", e))?;
            }
            if last && expect == *base {
                head = base - 1; // an empty last segment: the one before ends at base - 1
            }
        }
        let base = *bases.last().unwrap_or(&1);
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir, base))
            .map_err(|e| io_err("opening", e))?;
        let len = file.metadata().map_err(|e| io_err("opening", e))?.len();
        // What a crashed process wrote without syncing was found above
        // (the page cache outlives a process): durable from here on.
        file.sync_data().map_err(|e| io_err("opening", e))?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                active: Mutex::new(Active {
                    file,
                    base,
                    len,
                    zeroed_to: len,
                    last_pos: head,
                }),
                readers: RwLock::new(Vec::new()),
                synced: AtomicU64::new(head),
            },
            head,
        ))
    }

    fn active(&self) -> MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create(dir: &Path, base: u64) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(segment_path(dir, base))
            .map_err(|e| io_err("creating a segment", e))?;
        sync_dir(dir).map_err(|e| io_err("creating a segment", e))?;
        Ok(file)
    }

    /// Appends a commit's frames, and with `sync` makes them durable
    /// (`fdatasync`) before it returns; else the next [`Journal::sync`]
    /// does. Returns each frame's location, in order. On an error nothing
    /// of the commit may be trusted: the caller must not use the journal
    /// again before a reopen (which cuts a partial commit off).
    pub fn append(&self, pending: &Pending, sync: bool) -> Result<Vec<Location>, StoreError> {
        let (Some(&(first_pos, _, _)), Some(&(last_pos, _, _))) =
            (pending.frames.first(), pending.frames.last())
        else {
            return Ok(Vec::new());
        };
        let mut a = self.active();
        if a.len >= SEGMENT_BYTES {
            // Closed at its last frame (a closed segment is read to its
            // end) and synced whole: every position before the next
            // segment is durable.
            segfile::cut_to(&a.file, a.len).map_err(|e| io_err("closing a segment", e))?;
            self.synced.fetch_max(a.last_pos, Ordering::AcqRel);
            a.file = Self::create(&self.dir, first_pos)?;
            a.base = first_pos;
            a.len = 0;
            a.zeroed_to = 0;
        }
        let start = a.len;
        let end = start + pending.buf.len() as u64;
        a.zeroed_to = segfile::zero_ahead(&a.file, start, a.zeroed_to, end)
            .map_err(|e| io_err("write", e))?;
        a.file
            .write_all_at(&pending.buf, start)
            .and_then(|()| if sync { a.file.sync_data() } else { Ok(()) })
            .map_err(|e| io_err("write", e))?;
        a.len += pending.buf.len() as u64;
        a.last_pos = last_pos;
        if sync {
            self.synced.fetch_max(last_pos, Ordering::AcqRel);
        }
        Ok(pending
            .frames
            .iter()
            .map(|&(_, off, len)| Location {
                segment: a.base,
                offset: (start + u64::from(off)) as u32,
                len,
            })
            .collect())
    }

    /// Makes every frame appended so far durable (one `fdatasync` of the
    /// segment being written, none if nothing was appended since the last)
    /// and returns the last durable position. On an error the caller must
    /// not trust the journal before a reopen, as after a failed append.
    pub fn sync(&self) -> Result<u64, StoreError> {
        let a = self.active();
        if self.synced.load(Ordering::Acquire) < a.last_pos {
            a.file.sync_data().map_err(|e| io_err("sync", e))?;
            self.synced.fetch_max(a.last_pos, Ordering::AcqRel);
        }
        Ok(self.synced.load(Ordering::Acquire))
    }

    /// Cuts the zeros kept ahead of the data off, durably (the segment
    /// then ends at its last frame); the next append writes them again.
    pub fn trim(&self) -> Result<(), StoreError> {
        let mut a = self.active();
        if a.zeroed_to > a.len {
            segfile::cut_to(&a.file, a.len).map_err(|e| io_err("trimming", e))?;
            a.zeroed_to = a.len;
        }
        Ok(())
    }

    /// The last position whose frame is durable.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Cuts everything after `end` off (`None`: everything), fsynced: an
    /// unfinished upgrade's copies beyond its recorded progress.
    pub fn truncate_after(&self, end: Option<Location>) -> Result<(), StoreError> {
        let (keep_base, keep_len) = end.map_or((1, 0), |l| (l.segment, l.end()));
        for base in list_segments(&self.dir).map_err(|e| io_err("listing", e))? {
            if base > keep_base {
                fs::remove_file(segment_path(&self.dir, base))
                    .map_err(|e| io_err("truncating", e))?;
            }
        }
        let path = segment_path(&self.dir, keep_base);
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("truncating", e))?;
        // The position of the last frame kept.
        let last_pos = match end {
            None => 0,
            Some(loc) => {
                let mut buf = vec![0u8; loc.len as usize];
                f.read_exact_at(&mut buf, u64::from(loc.offset))
                    .map_err(|e| io_err("truncating", e))?;
                decode_frame(&buf)
                    .map(|(frame, _)| frame.pos)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("journal: no record to keep at {loc:?}"))
                    })?
            }
        };
        segfile::cut_to(&f, keep_len).map_err(|e| io_err("truncating", e))?;
        sync_dir(&self.dir).map_err(|e| io_err("truncating", e))?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening", e))?;
        *self.active() = Active {
            file,
            base: keep_base,
            len: keep_len,
            zeroed_to: keep_len,
            last_pos,
        };
        self.synced.store(last_pos, Ordering::Release);
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    fn reader(&self, base: u64) -> Result<Arc<File>, StoreError> {
        let found = {
            let r = self.readers.read().unwrap_or_else(|e| e.into_inner());
            r.iter().find(|(b, _)| *b == base).map(|(_, f)| f.clone())
        };
        if let Some(f) = found {
            return Ok(f);
        }
        let f = Arc::new(File::open(segment_path(&self.dir, base)).map_err(|e| io_err("read", e))?);
        let mut w = self.readers.write().unwrap_or_else(|e| e.into_inner());
        if w.len() >= 64 {
            w.remove(0);
        }
        w.push((base, f.clone()));
        Ok(f)
    }

    /// The record at `loc`, which must hold position `pos`.
    pub fn read(&self, pos: u64, loc: Location) -> Result<Frame, StoreError> {
        let file = self.reader(loc.segment)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(|e| io_err("read", e))?;
        match decode_frame(&buf) {
            Some((f, n)) if n == buf.len() && f.pos == pos => Ok(f),
            _ => Err(StoreError::Corrupt(format!(
                "journal record {pos} at {loc:?} is damaged or misplaced"
            ))),
        }
    }

    /// A sequential reader from `loc`'s segment and offset.
    pub fn reader_at(&self, segment: u64, offset: u64) -> Result<SegmentReader, StoreError> {
        SegmentReader::open(&self.dir, segment, offset).map_err(|e| io_err("read", e))
    }

    /// The segment after `base`, if any.
    pub fn next_segment(&self, base: u64) -> Result<Option<u64>, StoreError> {
        Ok(list_segments(&self.dir)
            .map_err(|e| io_err("listing", e))?
            .into_iter()
            .find(|b| *b > base))
    }
}

/// Reads frames in order starting at a location, across segments.
pub fn read_from(
    journal: &Journal,
    segment: u64,
    offset: u64,
    mut visit: impl FnMut(Frame, Location) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut base = Some(segment);
    let mut offset = offset;
    while let Some(b) = base {
        let mut r = journal.reader_at(b, offset)?;
        while let Some((f, loc)) = r.next_frame().map_err(|e| io_err("read", e))? {
            if !visit(f, loc)? {
                return Ok(());
            }
        }
        base = journal.next_segment(b)?;
        offset = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(range: std::ops::Range<u64>) -> Pending {
        let mut p = Pending::default();
        for pos in range {
            p.push(pos, 1, |b| {
                b.extend_from_slice(format!("event {pos}").as_bytes());
                Ok(())
            })
            .unwrap();
        }
        p
    }

    #[test]
    fn appended_frames_read_back_at_their_locations_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!(head, 0);
        let locs = j.append(&pending(1..4), true).unwrap();
        let more = j.append(&pending(4..6), true).unwrap();
        let f = j.read(5, more[1]).unwrap();
        assert_eq!((f.pos, f.tag, f.payload), (5, 1, b"event 5".to_vec()));
        assert!(matches!(j.read(4, locs[2]), Err(StoreError::Corrupt(_))));
        let mut seen = Vec::new();
        read_from(&j, locs[1].segment, locs[1].offset.into(), |f, _| {
            seen.push(f.pos);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![2, 3, 4, 5]);
        drop(j);
        let (_, head) = Journal::open(dir.path()).unwrap();
        assert_eq!(head, 5);
    }

    #[test]
    fn a_torn_last_commit_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let locs = j.append(&pending(1..3), true).unwrap();
        drop(j);
        // Half of a third frame: a commit the crash interrupted.
        // Written where the commit would have gone: after the last frame,
        // over the zeros written ahead.
        let path = segment_path(dir.path(), 1);
        assert!(fs::metadata(&path).unwrap().len() > locs[1].end() + segfile::ZERO_AHEAD / 2);
        let torn = pending(3..4).buf;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&torn[..torn.len() / 2], locs[1].end())
            .unwrap();
        drop(f);
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!(head, 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), locs[1].end());
        let next = j.append(&pending(3..4), true).unwrap();
        assert_eq!(j.read(3, next[0]).unwrap().pos, 3);
    }

    #[test]
    fn the_zeros_written_ahead_are_cut_at_open_and_appends_go_on_after_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let locs = j.append(&pending(1..3), true).unwrap();
        drop(j);
        let path = segment_path(dir.path(), 1);
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!(head, 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), locs[1].end());
        let next = j.append(&pending(3..4), true).unwrap();
        assert_eq!(next[0].offset as u64, locs[1].end());
        assert_eq!(j.read(3, next[0]).unwrap().pos, 3);
        j.trim().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), next[0].end());
    }

    #[test]
    fn garbage_beyond_the_zeros_written_ahead_is_damage_past_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let locs = j.append(&pending(1..3), true).unwrap();
        drop(j);
        // Not what a crash leaves: a commit is written right after the last frame.
        let f = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), 1))
            .unwrap();
        let far = locs[1].end() + 4 * MAX_FRAME as u64 + 1;
        f.write_all_at(b"garbage", far).unwrap();
        drop(f);
        assert!(matches!(
            Journal::open(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn given_unsynced_appends_when_synced_then_the_synced_position_moves_to_the_last_written() {
        let dir = tempfile::tempdir().unwrap();
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!((head, j.synced()), (0, 0));
        j.append(&pending(1..3), true).unwrap();
        assert_eq!(j.synced(), 2);
        j.append(&pending(3..5), false).unwrap();
        j.append(&pending(5..6), false).unwrap();
        assert_eq!(j.synced(), 2, "not synced yet");
        assert_eq!(j.sync().unwrap(), 5);
        assert_eq!(j.sync().unwrap(), 5, "nothing more to sync");
        drop(j);
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!((head, j.synced()), (5, 5), "durable once opened again");
    }

    #[test]
    fn given_a_truncation_then_the_synced_position_is_the_last_frame_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let locs = j.append(&pending(1..4), false).unwrap();
        j.truncate_after(Some(locs[1])).unwrap();
        assert_eq!(j.synced(), 2);
        j.truncate_after(None).unwrap();
        assert_eq!(j.synced(), 0);
        j.append(&pending(1..2), false).unwrap();
        assert_eq!(j.sync().unwrap(), 1);
    }

    #[test]
    fn a_record_out_of_place_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        j.append(&pending(1..3), true).unwrap();
        j.append(&pending(7..8), true).unwrap();
        drop(j);
        assert!(matches!(
            Journal::open(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn truncating_after_a_location_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let locs = j.append(&pending(1..5), true).unwrap();
        j.truncate_after(Some(locs[1])).unwrap();
        drop(j);
        let (j, head) = Journal::open(dir.path()).unwrap();
        assert_eq!(head, 2);
        j.truncate_after(None).unwrap();
        drop(j);
        assert_eq!(Journal::open(dir.path()).unwrap().1, 0);
    }
}
