//! Recovery of a partition's active segment at open: a torn tail is cut,
//! damage is refused (or, at the operator's request, skipped and counted).
//!
//! Every write group is written with one `write` and made durable with one
//! `fdatasync` before the next group is written, and every frame names the
//! first offset of its group. So after a crash only the last group can be
//! incomplete, and its pages may have reached the disk in any order: a bad
//! frame may be followed by sound frames *of the same group*, and cutting
//! from the bad frame on loses nothing that was confirmed. A sound frame
//! of a *later* group after a bad one proves that the bad one had been made
//! durable and confirmed: that is damage (a bad disk, a stray write), and
//! cutting there would silently drop confirmed records. Recovery refuses
//! it, naming the offsets at risk, unless told to skip the damaged records:
//! then each is replaced by a marker record (`DAMAGED_RECORD_PROPERTY`) that the
//! pipeline counts as a rejected command, and the sound records after it
//! are kept at their offsets.

use super::segment::{
    decode_body, encode_frame, segment_path, FrameError, Record, SegReader, HEADER,
};
use super::{corrupt, sync_dir};
use crate::domain::codec::DAMAGED_RECORD_PROPERTY;
use crate::log::{LogError, NewRecord};
use crate::segfile;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// What recovery found in the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovered {
    /// Sound records in the segment (markers of skipped records included).
    pub records: u64,
    /// Length of the sound prefix (the file is truncated to it).
    pub valid_len: u64,
}

/// A sound frame found after a bad one.
struct Found {
    pos: usize,
    end: usize,
    record: Record,
}

/// Scans the last (active) segment: keeps its sound prefix, cuts a torn
/// tail, and refuses damage unless `skip_damaged` (see the module docs).
pub(super) fn recover_last(
    dir: &Path,
    base: u64,
    skip_damaged: bool,
) -> Result<Recovered, LogError> {
    let (records, bad_pos) = sound_prefix(dir, base)?;
    let path = segment_path(dir, base);
    let len = fs::metadata(&path)?.len();
    if bad_pos >= len {
        return Ok(Recovered {
            records,
            valid_len: len,
        });
    }
    let expected = base + records;
    // A segment holds at most `segment_bytes` plus one group: it fits.
    let data = fs::read(&path)?;
    let after = sound_frames_after(&data, bad_pos as usize, expected);
    let later = after
        .iter()
        .filter(|f| f.record.group.is_some_and(|g| g > expected))
        .count();
    if later == 0 {
        let written_ahead = segfile::is_zeros(&data[bad_pos as usize..]);
        cut(&path, len, bad_pos, written_ahead)?;
        return Ok(Recovered {
            records,
            valid_len: bad_pos,
        });
    }
    let last = after.last().map_or(expected, |f| f.record.offset);
    if !skip_damaged {
        return Err(corrupt(format!(
            "{}: the record at offset {expected} (byte {bad_pos}) is damaged, and {} sound \
             records up to offset {last} follow it, {later} of them from later write groups. \
             A crash only tears the last write group, so this is damage to records the log \
             had confirmed: cutting here would lose the {} confirmed records at offsets \
             {expected}..={last}. Restore the segment from a backup, or start with \
             --log-skip-damaged to keep the sound records and skip the damaged ones \
             (each is then counted as a rejected command)",
            path.display(),
            after.len(),
            last - expected + 1,
        )));
    }
    rewrite_skipping(dir, base, &data, bad_pos as usize, expected, &after)?;
    let (records, valid_len) = sound_prefix(dir, base)?;
    let len = fs::metadata(&path)?.len();
    cut(&path, len, valid_len, false)?;
    Ok(Recovered { records, valid_len })
}

/// Records in the segment's sound prefix and the prefix's length: frames
/// that are whole, pass their CRC, decode, and carry the expected offset.
fn sound_prefix(dir: &Path, base: u64) -> Result<(u64, u64), LogError> {
    let mut reader = SegReader::open(dir, base, 0)?;
    let mut records = 0u64;
    loop {
        let pos = reader.byte_pos();
        match reader.next_frame(u64::MAX) {
            Ok(Some(body)) => match decode_body(&reader.buf[body]) {
                Ok(r) if r.offset == base + records => records += 1,
                _ => return Ok((records, pos)),
            },
            Ok(None) | Err(FrameError::Truncated(_) | FrameError::Bad(..)) => {
                return Ok((records, pos))
            }
            Err(FrameError::Io(e)) => return Err(e.into()),
        }
    }
}

/// Truncates `path` (of length `len`) to `valid_len`, durably. A tail of
/// zeros only (`written_ahead`, see [`crate::segfile`]) is no loss and is
/// not reported as one.
fn cut(path: &Path, len: u64, valid_len: u64, written_ahead: bool) -> Result<(), LogError> {
    if len <= valid_len {
        return Ok(());
    }
    if written_ahead {
        tracing::debug!(
            segment = %path.display(),
            kept = valid_len,
            "cutting the zeros written ahead of the command log's data"
        );
    } else {
        tracing::warn!(
            segment = %path.display(),
            kept = valid_len,
            dropped = len - valid_len,
            "truncating the torn tail of the command log"
        );
    }
    let file = OpenOptions::new().write(true).open(path)?;
    Ok(segfile::cut_to(&file, valid_len)?)
}

/// The sound frame whose header starts at `pos`, and where it ends.
fn frame_at(data: &[u8], pos: usize) -> Option<(usize, Record)> {
    let header = data.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let end = pos.checked_add(HEADER)?.checked_add(len)?;
    if len == 0 || end > data.len() {
        return None;
    }
    let body = &data[pos + HEADER..end];
    if crc32fast::hash(body) != crc {
        return None;
    }
    decode_body(body).ok().map(|r| (end, r))
}

/// The sound frames after the bad one at `bad`, in file order, with
/// increasing offsets from `expected` on: frame by frame where they are
/// contiguous, byte by byte across damage.
fn sound_frames_after(data: &[u8], bad: usize, expected: u64) -> Vec<Found> {
    let mut found = Vec::new();
    let mut next_min = expected;
    let mut pos = bad + 1;
    while pos + HEADER <= data.len() {
        match frame_at(data, pos) {
            Some((end, record)) if record.offset >= next_min => {
                next_min = record.offset + 1;
                found.push(Found { pos, end, record });
                pos = end;
            }
            _ => pos += 1,
        }
    }
    found
}

/// Rewrites the segment from `bad` on: a marker record for every offset
/// whose frame is damaged, then the sound frames as they were. A gap inside
/// the last write group is its torn tail: nothing from there on is kept.
fn rewrite_skipping(
    dir: &Path,
    base: u64,
    data: &[u8],
    bad: usize,
    expected: u64,
    after: &[Found],
) -> Result<(), LogError> {
    let path = segment_path(dir, base);
    let last_group = after
        .iter()
        .filter_map(|f| f.record.group)
        .max()
        .unwrap_or(expected);
    let mut out = data[..bad].to_vec();
    let mut next = expected;
    let mut skipped = Vec::new();
    for f in after {
        if f.record.offset > next {
            if next >= last_group {
                break;
            }
            for offset in next..f.record.offset {
                let marker = NewRecord {
                    key: String::new(),
                    payload: Vec::new(),
                    properties: HashMap::from([(
                        DAMAGED_RECORD_PROPERTY.to_string(),
                        format!("offset {offset} of {}", path.display()),
                    )]),
                };
                encode_frame(&mut out, offset, offset, &marker, f.record.published_at_ms)?;
                skipped.push(offset);
            }
        }
        out.extend_from_slice(&data[f.pos..f.end]);
        next = f.record.offset + 1;
    }
    let tmp = dir.join(format!("{base:020}.seg.repair"));
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&out)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    tracing::error!(
        segment = %path.display(),
        skipped = skipped.len(),
        first = skipped.first().copied(),
        last = skipped.last().copied(),
        "skipped damaged records of the command log (--log-skip-damaged): each is delivered \
         as a marker and counted as a rejected command"
    );
    Ok(())
}
