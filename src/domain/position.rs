//! A command's place in the command log, shared by the log (which assigns
//! it) and the stores (which key their journals and fold checkpoints by
//! it): the partition a user's key hashes to, and the position of a record
//! within its partition. Ground layer: plain values, no I/O.

/// Where a record sits in its partition: ordered as the partition is
/// (publish order). Pulsar: `major` is the ledger, `minor` the entry id
/// shifted left by [`BATCH_BITS`] plus the index in its batch; the
/// embedded log: `major` 0, `minor` the offset shifted the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub major: u64,
    pub minor: u64,
}

/// Bits of [`Position::minor`] below the entry (the index in a batch).
pub const BATCH_BITS: u32 = 16;

impl Position {
    /// Above every position (as stored in CQL's signed 64-bit integers).
    pub const MAX: Position = Position {
        major: i64::MAX as u64,
        minor: i64::MAX as u64,
    };

    /// The position of entry `entry`, message `index` of its batch.
    pub fn new(major: u64, entry: u64, index: u64) -> Self {
        Position {
            major,
            minor: (entry << BATCH_BITS) | (index & ((1 << BATCH_BITS) - 1)),
        }
    }

    /// The last position of entry `entry` (every message of its batch).
    pub fn end_of_entry(major: u64, entry: u64) -> Self {
        Self::new(major, entry, (1 << BATCH_BITS) - 1)
    }

    pub fn entry(self) -> u64 {
        self.minor >> BATCH_BITS
    }
}

/// A record's partition and position: its identity in the command log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub partition: u32,
    pub position: Position,
}

/// The partition of `key` among `partitions`: FNV-1a 64 of the key's bytes
/// modulo the count. Stable across processes, versions and platforms.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(partitions)) as u32
}
