//! The committed-offsets file of a partition: the committed offset, the
//! acks above it, how far records were delivered, and a witness of the
//! store's durable head at the commit (see `CommandLog::witness_store`).

use super::{corrupt, write_atomic};
use crate::log::LogError;
use std::fs;
use std::io;
use std::path::Path;

const OFFSETS: &str = "offsets";
/// Offsets files without a store witness (read, never written).
const OFFSETS_MAGIC_V1: &[u8; 8] = b"ALPOFF01";
const OFFSETS_MAGIC: &[u8; 8] = b"ALPOFF02";

/// What the offsets file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Offsets {
    pub committed: u64,
    pub delivered: u64,
    /// The store's durable head when it was written (0: not recorded).
    pub witness: u64,
    pub acked: Vec<u64>,
}

/// Offsets file: magic, committed, delivered, store witness, n, n acked
/// offsets, CRC32 (all little-endian; the first version has no witness).
/// Written atomically (tmp, fsync, rename, fsync dir).
pub(super) fn read_offsets(dir: &Path) -> Result<Option<Offsets>, LogError> {
    let path = dir.join(OFFSETS);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bad = || corrupt(format!("{}: unreadable offsets file", path.display()));
    let fixed = match data.get(..8) {
        Some(m) if m == OFFSETS_MAGIC => 4,
        Some(m) if m == OFFSETS_MAGIC_V1 => 3,
        _ => return Err(bad()),
    };
    if data.len() < 12 + 8 * fixed {
        return Err(bad());
    }
    let (content, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(content).to_le_bytes() != crc {
        return Err(bad());
    }
    let words: Vec<u64> = content[8..]
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let n = fixed - 1;
    if content.len() % 8 != 0 || words.len() < fixed || words[n] != (words.len() - fixed) as u64 {
        return Err(bad());
    }
    Ok(Some(Offsets {
        committed: words[0],
        delivered: words[1],
        witness: if fixed == 4 { words[2] } else { 0 },
        acked: words[fixed..].to_vec(),
    }))
}

pub(super) fn write_offsets(
    dir: &Path,
    committed: u64,
    delivered: u64,
    witness: u64,
    acked: &[u64],
) -> io::Result<()> {
    let mut data = Vec::with_capacity(44 + 8 * acked.len());
    data.extend_from_slice(OFFSETS_MAGIC);
    for w in [committed, delivered, witness, acked.len() as u64]
        .iter()
        .chain(acked)
    {
        data.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32fast::hash(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    write_atomic(dir, OFFSETS, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_the_first_version_reads_without_a_witness() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offsets(dir.path()).unwrap(), None);
        write_offsets(dir.path(), 7, 9, 42, &[8]).unwrap();
        let want = Offsets {
            committed: 7,
            delivered: 9,
            witness: 42,
            acked: vec![8],
        };
        assert_eq!(read_offsets(dir.path()).unwrap(), Some(want));
        // A file of the first version: magic, committed, delivered, n, acks, CRC.
        let mut v1 = OFFSETS_MAGIC_V1.to_vec();
        for w in [7u64, 9, 1, 8] {
            v1.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        fs::write(dir.path().join(OFFSETS), &v1).unwrap();
        let read = read_offsets(dir.path()).unwrap().unwrap();
        assert_eq!((read.committed, read.witness, read.acked), (7, 0, vec![8]));
        // One flipped bit is refused.
        v1[9] ^= 1;
        fs::write(dir.path().join(OFFSETS), &v1).unwrap();
        assert!(read_offsets(dir.path()).is_err());
    }
}
