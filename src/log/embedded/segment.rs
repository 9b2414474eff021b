//! Segment files: record framing, sequential reading and tail recovery.
//!
//! A frame is `[u32 len LE][u32 crc32 LE of body][body]`; the body is the
//! MessagePack encoding of a record, fields by position (frames of earlier
//! builds name them: both decode, and earlier builds read these). A record
//! carries its own offset so that misplaced data is detected, and the
//! first offset of its write group, so that recovery can tell a torn write
//! from damage ([`super::recover`]).

use super::{corrupt, sync_dir};
use crate::log::{LogError, NewRecord};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes of the frame header.
pub(crate) const HEADER: usize = 8;
/// No sane body is this large; a bigger length field is garbage.
const MAX_BODY: usize = 1 << 30;
/// Read-ahead of a segment reader.
const CHUNK: usize = 256 * 1024;

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Base offsets of the segment files in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Creates (or empties) the segment file starting at `base` and makes its
/// directory entry durable.
pub(super) fn create_segment(dir: &Path, base: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(segment_path(dir, base))?;
    sync_dir(dir)?;
    Ok(file)
}

#[derive(Serialize)]
struct RecordRef<'a> {
    offset: u64,
    group: u64,
    key: &'a str,
    #[serde(serialize_with = "ser_bytes")]
    payload: &'a [u8],
    properties: &'a HashMap<String, String>,
    published_at_ms: i64,
}

/// A decoded record body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub offset: u64,
    /// The first offset of the write group the record was written in
    /// (absent in frames written before groups were recorded).
    #[serde(default)]
    pub group: Option<u64>,
    pub key: String,
    #[serde(deserialize_with = "de_bytes")]
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
    pub published_at_ms: i64,
}

fn ser_bytes<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(Bytes)
}

/// Appends the frame of `record` (at `offset`, in the write group starting
/// at offset `group`) to `buf`; on error `buf` is left as it was.
pub(crate) fn encode_frame(
    buf: &mut Vec<u8>,
    offset: u64,
    group: u64,
    record: &NewRecord,
    published_at_ms: i64,
) -> Result<(), LogError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    let body = RecordRef {
        offset,
        group,
        key: &record.key,
        payload: &record.payload,
        properties: &record.properties,
        published_at_ms,
    };
    // By position: no field names to write per record, nor to match when
    // it is read (the field order is the format).
    if let Err(e) = rmp_serde::encode::write(buf, &body) {
        buf.truncate(start);
        return Err(LogError::Corrupt(format!("cannot encode record: {e}")));
    }
    let len = buf.len() - start - HEADER;
    let Ok(len32) = u32::try_from(len) else {
        buf.truncate(start);
        return Err(LogError::TooLarge(len));
    };
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

pub(crate) fn decode_body(body: &[u8]) -> Result<Record, rmp_serde::decode::Error> {
    rmp_serde::from_slice(body)
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(super) enum FrameError {
    Io(io::Error),
    /// The data ends inside the frame starting at this file position.
    Truncated(u64),
    /// The frame starting at this file position is invalid.
    Bad(u64, &'static str),
}

impl FrameError {
    /// The error for a frame that should have been sound (durable data).
    pub(super) fn into_log_error(self, dir: &Path, base: u64) -> LogError {
        let seg = segment_path(dir, base);
        match self {
            Self::Io(e) => LogError::Io(e),
            Self::Truncated(pos) => corrupt(format!(
                "{}: record at byte {pos} is cut short",
                seg.display()
            )),
            Self::Bad(pos, why) => {
                corrupt(format!("{}: record at byte {pos}: {why}", seg.display()))
            }
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Sequential reader of one segment file with its own read-ahead buffer.
/// It never reads past the `limit` given to [`SegReader::next_frame`], so
/// bytes that are not yet durable are never buffered.
pub(super) struct SegReader {
    file: File,
    pub base: u64,
    pub buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
    /// Index in `buf` of the next frame.
    cursor: usize,
    /// Position of the OS file cursor.
    file_pos: u64,
}

impl SegReader {
    pub fn open(dir: &Path, base: u64, byte_pos: u64) -> io::Result<Self> {
        let file = File::open(segment_path(dir, base))?;
        Ok(Self {
            file,
            base,
            buf: Vec::new(),
            buf_start: byte_pos,
            cursor: 0,
            file_pos: 0,
        })
    }

    /// File position of the next frame.
    pub fn byte_pos(&self) -> u64 {
        self.buf_start + self.cursor as u64
    }

    /// Makes `need` bytes available at the cursor; `false` if the file (or
    /// `limit`) ends first.
    fn ensure(&mut self, need: usize, limit: u64) -> io::Result<bool> {
        if self.buf.len() - self.cursor >= need {
            return Ok(true);
        }
        if self.cursor > 0 {
            self.buf.drain(..self.cursor);
            self.buf_start += self.cursor as u64;
            self.cursor = 0;
        }
        while self.buf.len() < need {
            let have = self.buf.len();
            let at = self.buf_start + have as u64;
            if at >= limit {
                return Ok(false);
            }
            let want = usize::try_from(limit - at).map_or(CHUNK, |left| left.min(CHUNK));
            if self.file_pos != at {
                self.file.seek(SeekFrom::Start(at))?;
                self.file_pos = at;
            }
            self.buf.resize(have + want, 0);
            let n = loop {
                match self.file.read(&mut self.buf[have..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(have);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(have + n);
            self.file_pos += n as u64;
            if n == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next frame's body (as a range of `self.buf`), checked against its
    /// CRC; `Ok(None)` when the data ends exactly at a frame boundary.
    pub fn next_frame(&mut self, limit: u64) -> Result<Option<Range<usize>>, FrameError> {
        let pos = self.byte_pos();
        if !self.ensure(HEADER, limit)? {
            return if self.buf.len() == self.cursor {
                Ok(None)
            } else {
                Err(FrameError::Truncated(pos))
            };
        }
        let mut word = [0u8; 4];
        word.copy_from_slice(&self.buf[self.cursor..self.cursor + 4]);
        let len = u32::from_le_bytes(word) as usize;
        word.copy_from_slice(&self.buf[self.cursor + 4..self.cursor + HEADER]);
        let crc = u32::from_le_bytes(word);
        if len == 0 || len > MAX_BODY {
            return Err(FrameError::Bad(pos, "impossible length"));
        }
        if !self.ensure(HEADER + len, limit)? {
            return Err(FrameError::Truncated(pos));
        }
        let body = self.cursor + HEADER..self.cursor + HEADER + len;
        if crc32fast::hash(&self.buf[body.clone()]) != crc {
            return Err(FrameError::Bad(pos, "CRC mismatch"));
        }
        self.cursor = body.end;
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of earlier builds name their fields: they decode to the same
    /// record as the positional frames written now.
    #[test]
    fn positional_and_named_bodies_decode_alike() {
        let record = NewRecord {
            key: "u-1".into(),
            payload: b"\xC1\x01payload".to_vec(),
            properties: HashMap::from([("commandId".to_string(), "c-1".to_string())]),
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, 7, 5, &record, 1_764_000_000_000).unwrap();
        let positional = decode_body(&frame[HEADER..]).unwrap();
        let named = rmp_serde::to_vec_named(&RecordRef {
            offset: 7,
            group: 5,
            key: &record.key,
            payload: &record.payload,
            properties: &record.properties,
            published_at_ms: 1_764_000_000_000,
        })
        .unwrap();
        assert!(frame.len() - HEADER < named.len(), "no names: smaller");
        assert_eq!(decode_body(&named).unwrap(), positional);
        assert_eq!(positional.offset, 7);
        assert_eq!(positional.group, Some(5));
        assert_eq!(positional.payload, record.payload);
        assert_eq!(positional.properties, record.properties);
    }
}
