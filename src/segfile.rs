//! Zeros written ahead of an append-only segment file's end, so that its
//! appends overwrite blocks the file system has already allocated.
//!
//! The command log and the store's journal make every group durable with
//! one `fdatasync`. When the group extends the file (or fills a hole),
//! that sync must also write the file's new allocation and size; when the
//! group lands on blocks already written and synced, it writes only the
//! data. On this project's ext4 virtual machines the second kind costs
//! about 47 µs of CPU and two context switches per sync against 60-69 µs
//! and three (4 KiB appends, 2,000 syncs each way). Both writers
//! therefore keep [`ZERO_AHEAD`] of zeros past their data: the first sync
//! after each extension pays for the allocation once per mebibyte.
//!
//! The zeros are not records: each reader stops at its writer's durable
//! end (or at the first frame that is not whole and valid, which a zero
//! header never is), recovery cuts a zero tail off at open like a torn
//! one ([`is_zeros`] and [`data_end`] tell the two apart, so that only a
//! torn tail is reported or refused), and a segment is cut back to its
//! data ([`cut_to`]) when it is sealed and at a clean stop.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How far past the data the zeros reach after an extension.
pub const ZERO_AHEAD: u64 = 1 << 20;

/// Zeros written per `pwrite` (a static buffer: no allocation per extension).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Makes sure `file` holds zeros (or data) up to `end`: if `end` is past
/// `zeroed_to`, writes zeros from `max(zeroed_to, data_end)` to
/// `end + ZERO_AHEAD` with positioned writes (the file's cursor does not
/// move) and returns the new zeroed end; else returns `zeroed_to`. Bytes
/// below `data_end` are never touched. Unsynced: the caller's next sync
/// makes them durable with its data.
pub fn zero_ahead(file: &File, data_end: u64, zeroed_to: u64, end: u64) -> io::Result<u64> {
    if end <= zeroed_to {
        return Ok(zeroed_to);
    }
    let to = end + ZERO_AHEAD;
    let mut at = zeroed_to.max(data_end);
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(to)
}

/// Whether every byte of `tail` is zero: space written ahead, not a torn
/// or damaged write.
pub fn is_zeros(tail: &[u8]) -> bool {
    tail.iter().all(|&b| b == 0)
}

/// The end of the last byte in `from..len` of `file` that is not zero
/// (`from` if there is none): what a torn write left there, without the
/// zeros written ahead of it. Reads the range in chunks, for a tail too
/// large to hold.
pub fn data_end(file: &File, from: u64, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; ZEROS.len()];
    let (mut end, mut at) = (from, from);
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    Ok(end)
}

/// Cuts `file` to `len` (its data: the zeros ahead, a torn tail) and
/// makes the new length durable.
pub fn cut_to(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn temp_file() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("seg"))
            .unwrap();
        (dir, file)
    }

    #[test]
    fn given_data_when_zeros_are_written_ahead_then_the_data_stays_and_the_cursor_does_not_move() {
        let (_dir, mut file) = temp_file();
        file.write_all(b"abc").unwrap();
        let zeroed = zero_ahead(&file, 3, 0, 10).unwrap();
        assert_eq!(zeroed, 10 + ZERO_AHEAD);
        assert_eq!(file.metadata().unwrap().len(), zeroed);
        assert_eq!(file.stream_position().unwrap(), 3);
        file.write_all(b"de").unwrap();
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(&all[..5], b"abcde");
        assert!(is_zeros(&all[5..]));
    }

    #[test]
    fn given_zeros_far_enough_when_asked_again_then_nothing_is_written() {
        let (_dir, file) = temp_file();
        let zeroed = zero_ahead(&file, 0, 0, 1).unwrap();
        assert_eq!(zero_ahead(&file, 0, zeroed, zeroed).unwrap(), zeroed);
        assert_eq!(file.metadata().unwrap().len(), zeroed);
    }

    #[test]
    fn given_a_torn_write_before_zeros_when_its_end_is_found_then_the_zeros_do_not_count() {
        let (_dir, file) = temp_file();
        let zeroed = zero_ahead(&file, 0, 0, 3).unwrap();
        file.write_all_at(b"torn", 100_000).unwrap();
        assert_eq!(data_end(&file, 0, zeroed).unwrap(), 100_004);
        assert_eq!(data_end(&file, 100_004, zeroed).unwrap(), 100_004);
        cut_to(&file, 100_004).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 100_004);
    }

    #[test]
    fn given_a_tail_when_checked_then_only_all_zeros_count_as_written_ahead() {
        assert!(is_zeros(&[]));
        assert!(is_zeros(&[0; 100]));
        let mut torn = vec![0u8; 100];
        torn[99] = 1;
        assert!(!is_zeros(&torn));
    }
}
