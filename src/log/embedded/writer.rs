//! The writer of one partition: a dedicated thread doing group commit,
//! with at most one `fdatasync` per sync interval.
//!
//! Group commit alone syncs as often as the disk allows: under load every
//! sync finds a few requests queued and the next starts at once, so the
//! sync rate follows the disk's speed, not the load. Each sync is a flush
//! request the disk (or, in a VM, the host's I/O thread) must serve, and
//! on a virtual machine that host CPU is taken from the VM's own: at 1,700
//! syncs per second the guest's two busy cores lose about a tenth of their
//! time, in stalls of 5 to 15 ms that every request waiting then pays.
//! A group therefore starts no sooner than the sync interval after the
//! previous one started ([`pause_before_group`]): under load the requests
//! that arrive meanwhile join it, a request that finds the writer idle is
//! written at once.
//!
//! The segment is kept zeroed ahead of its data ([`crate::segfile`]), so
//! that a group's `fdatasync` writes the data alone, not the file's growth.

use super::partition::Shared;
use super::segment::{create_segment, encode_frame};
use super::{lock, now_ms};
use crate::log::{LogError, NewRecord};
use crate::segfile;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// At most this many requests are committed together.
const MAX_REQUESTS_PER_GROUP: usize = 4096;

pub(super) enum WriterMsg {
    /// Append `records` (all of this partition) contiguously; replies with
    /// the offset of the first once durable. `bytes` is their payload size.
    Append {
        records: Vec<NewRecord>,
        bytes: usize,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
    /// Stop after everything queued before this message is written.
    Shutdown(oneshot::Sender<()>),
}

type Pending = (Vec<NewRecord>, oneshot::Sender<Result<u64, LogError>>);

pub(super) struct Writer {
    pub shared: Arc<Shared>,
    /// The active segment, positioned at `seg_len`.
    pub file: File,
    pub seg_base: u64,
    /// Durable length of the active segment.
    pub seg_len: u64,
    /// End of the zeros written ahead of `seg_len` (the file's length).
    pub zeroed_to: u64,
    /// Offset of the next record.
    pub next_offset: u64,
    pub segment_bytes: u64,
    pub max_batch_bytes: usize,
    /// Least time between the starts of two groups (zero: none).
    pub sync_interval: Duration,
    /// When the last group started to be written (`None`: none yet).
    pub last_group: Option<Instant>,
    pub buf: Vec<u8>,
    /// Set when the state on disk is uncertain (failed fsync): the
    /// partition refuses appends until the process restarts and recovers.
    pub failed: Option<String>,
}

impl Writer {
    pub fn spawn(self, rx: mpsc::Receiver<WriterMsg>) -> io::Result<()> {
        std::thread::Builder::new()
            .name(format!("log-writer-{}", self.shared.id))
            .spawn(move || self.run(rx))
            .map(|_| ())
    }

    fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut group: Vec<Pending> = Vec::new();
        // Ends when every sender is gone (the log was dropped) or on Shutdown;
        // dropping `rx` then fails the requests queued after, with `Closed`.
        while let Some(first) = rx.blocking_recv() {
            if matches!(first, WriterMsg::Append { .. }) {
                // Blocking this thread only: requests queue meanwhile and
                // join the group below.
                if let Some(pause) =
                    pause_before_group(self.last_group, Instant::now(), self.sync_interval)
                {
                    std::thread::sleep(pause);
                }
            }
            let mut bytes = 0;
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Append {
                        records,
                        bytes: b,
                        reply,
                    } => {
                        bytes += b;
                        group.push((records, reply));
                    }
                    WriterMsg::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                }
                if bytes < self.max_batch_bytes && group.len() < MAX_REQUESTS_PER_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.write_group(&mut group);
            }
            if let Some(done) = shutdown {
                self.trim();
                let _ = done.send(());
                return;
            }
        }
    }

    /// Writes a group with one `write` and one `fsync`, then answers every
    /// request and publishes the new durable mark.
    fn write_group(&mut self, group: &mut Vec<Pending>) {
        if let Some(reason) = &self.failed {
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(LogError::Unavailable(reason.clone())));
            }
            return;
        }
        let now = now_ms();
        let start = self.next_offset;
        self.buf.clear();
        let mut results = Vec::with_capacity(group.len());
        for (records, _) in group.iter() {
            let first = self.next_offset;
            let mark = self.buf.len();
            let mut result = Ok(first);
            for record in records {
                if let Err(e) = encode_frame(&mut self.buf, self.next_offset, start, record, now) {
                    self.buf.truncate(mark);
                    self.next_offset = first;
                    result = Err(e);
                    break;
                }
                self.next_offset += 1;
            }
            results.push(result);
        }
        match self.persist(start) {
            Ok(()) => self.shared.durable.send_modify(|d| {
                d.next_offset = self.next_offset;
                d.seg_base = self.seg_base;
                d.seg_len = self.seg_len;
            }),
            Err(e) => {
                tracing::error!(partition = self.shared.id, error = %e, "command log write failed");
                self.next_offset = start;
                for result in results.iter_mut().filter(|r| r.is_ok()) {
                    *result = Err(LogError::Io(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
        for ((_, reply), result) in group.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        if self.buf.capacity() > 4 * self.max_batch_bytes {
            self.buf = Vec::new();
        }
    }

    /// Writes `self.buf` (records from offset `start` on) and syncs it.
    fn persist(&mut self, start: u64) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.last_group = Some(Instant::now());
        if self.seg_len > 0 && self.seg_len + self.buf.len() as u64 > self.segment_bytes {
            self.roll(start)?;
        }
        let end = self.seg_len + self.buf.len() as u64;
        let written = segfile::zero_ahead(&self.file, self.seg_len, self.zeroed_to, end)
            .map(|zeroed_to| self.zeroed_to = zeroed_to)
            .and_then(|()| self.file.write_all(&self.buf));
        if let Err(e) = written {
            // Cut the partial write (and the zeros) so the next group lands
            // where it should.
            let undo = self
                .file
                .set_len(self.seg_len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.seg_len)))
                .and_then(|_| self.file.sync_all());
            self.zeroed_to = self.seg_len;
            if let Err(u) = undo {
                self.fail(format!("write failed ({e}) and could not be undone ({u})"));
            }
            return Err(e);
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the page cache may no longer reflect the
            // disk; only a restart (with tail recovery) is safe.
            self.fail(format!("fsync failed: {e}"));
            return Err(e);
        }
        self.seg_len += self.buf.len() as u64;
        Ok(())
    }

    /// Seals the active segment (cut back to its data: readers read a
    /// sealed segment to its end) and starts a new one at `base`.
    fn roll(&mut self, base: u64) -> io::Result<()> {
        if let Err(e) = segfile::cut_to(&self.file, self.seg_len) {
            self.fail(format!("sealing a segment failed: {e}"));
            return Err(e);
        }
        self.file = create_segment(&self.shared.dir, base)?;
        self.seg_base = base;
        self.seg_len = 0;
        self.zeroed_to = 0;
        lock(&self.shared.segments).push(base);
        Ok(())
    }

    /// Cuts the zeros written ahead off at a clean stop, so that the next
    /// open finds the segment ending at its data (recovery would cut them
    /// too, after reading them).
    fn trim(&mut self) {
        if self.failed.is_some() || self.zeroed_to == self.seg_len {
            return;
        }
        match segfile::cut_to(&self.file, self.seg_len) {
            Ok(()) => self.zeroed_to = self.seg_len,
            Err(e) => tracing::warn!(
                partition = self.shared.id,
                error = %e,
                "could not cut the command log's zeros written ahead at shutdown (the next open does)"
            ),
        }
    }

    fn fail(&mut self, why: String) {
        let reason = format!(
            "command log partition {} is out of service until restart: {why}",
            self.shared.id
        );
        tracing::error!("{reason}");
        self.failed = Some(reason);
    }
}

/// How long a writer that has a request waits before it writes a group:
/// until `interval` has passed since the previous group started, so that
/// a partition syncs at most once per interval. `None`: write at once
/// (no previous group, no interval, or the interval is over).
pub(super) fn pause_before_group(
    last_group: Option<Instant>,
    now: Instant,
    interval: Duration,
) -> Option<Duration> {
    let due = last_group? + interval;
    (due > now).then(|| due - now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The pause of a request arriving `since` after the previous group
    /// started (`None`: no previous group), with `interval`.
    fn pause(since: Option<Duration>, interval: Duration) -> Option<Duration> {
        let start = Instant::now();
        let last = since.map(|_| start);
        pause_before_group(last, start + since.unwrap_or_default(), interval)
    }

    #[test]
    fn the_first_group_is_written_at_once() {
        // Given a writer that has written nothing, with a 2 ms interval,
        // when a request arrives, then it does not wait
        assert_eq!(pause(None, 2 * MS), None);
    }

    #[test]
    fn a_request_within_the_interval_waits_for_its_end() {
        // Given a group started 0.5 ms ago, with a 2 ms interval, when a
        // request arrives, then it waits the 1.5 ms left
        assert_eq!(
            pause(Some(Duration::from_micros(500)), 2 * MS),
            Some(Duration::from_micros(1500))
        );
    }

    #[test]
    fn a_request_after_the_interval_or_without_one_is_written_at_once() {
        // Given a group started 3 ms ago, with a 2 ms interval: no wait
        assert_eq!(pause(Some(3 * MS), 2 * MS), None);
        // Given exactly at the interval's end: no wait
        assert_eq!(pause(Some(2 * MS), 2 * MS), None);
        // Given no interval: never a wait
        assert_eq!(pause(Some(Duration::ZERO), Duration::ZERO), None);
    }
}
