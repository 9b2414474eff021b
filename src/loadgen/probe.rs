//! The run's probes: shared counters and HDR histograms, the observer of
//! committed records (end-to-end latency), the per-second snapshot (with
//! each second's histograms kept for the interval logs) and progress line,
//! and the process's resident memory.

use super::hdr::IntervalLog;
use super::report::{LatencyFiles, Second};
use crate::actors::subscribers::Committed;
use crate::process::CpuTimes;
use crate::store::JournalRecord;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A latency histogram: 1 µs .. 1 h, 3 significant digits (`None` only if
/// those constant bounds were invalid).
pub(super) fn hist() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()
}

#[derive(Default)]
pub(super) struct Hists {
    pub(super) ack: Option<Histogram<u64>>,
    pub(super) ack_sec: Option<Histogram<u64>>,
    pub(super) e2e: Option<Histogram<u64>>,
    pub(super) e2e_sec: Option<Histogram<u64>>,
    pub(super) read: Option<Histogram<u64>>,
}

impl Hists {
    pub(super) fn new() -> Self {
        Self {
            ack: hist(),
            ack_sec: hist(),
            e2e: hist(),
            e2e_sec: hist(),
            read: hist(),
        }
    }
    /// The whole run's latencies as files beside the report, with their
    /// interval logs: the acknowledgement, and the end-to-end latency
    /// where it was measured (in-process).
    pub(super) fn files<'a>(
        &'a self,
        intervals: &'a Intervals,
        in_process: bool,
    ) -> Vec<LatencyFiles<'a>> {
        let mut files = Vec::new();
        if let Some(whole) = &self.ack {
            files.push(LatencyFiles {
                name: "ack",
                title: "acknowledgement",
                color: "#1f77b4",
                whole,
                intervals: &intervals.ack,
            });
        }
        if let (Some(whole), true) = (&self.e2e, in_process) {
            files.push(LatencyFiles {
                name: "e2e",
                title: "end-to-end",
                color: "#2ca02c",
                whole,
                intervals: &intervals.e2e,
            });
        }
        files
    }

    pub(super) fn record(h: &mut Option<Histogram<u64>>, since: Instant) {
        if let Some(h) = h {
            let us = since.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
            let _ = h.record(us);
        }
    }
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) sent: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) outstanding: AtomicU64,
    pub(super) persisted: AtomicU64,
    pub(super) reads_failed: AtomicU64,
    /// Appends retried (log targets: the broker refused or was down).
    pub(super) retries: AtomicU64,
    pub(super) hists: Mutex<Hists>,
    /// Intended send time of every valid first send not yet seen in the journal.
    pub(super) pending: Mutex<Pending>,
    pub(super) stop: AtomicBool,
}

impl Shared {
    pub(super) fn ack(&self, n: u64, intended: &[Instant]) {
        self.acked.fetch_add(n, Relaxed);
        let now = Instant::now();
        if let Ok(mut guard) = self.hists.lock() {
            let h = &mut *guard;
            for t in intended {
                // One reading for both: the second's histogram and the
                // whole run's hold the same values, so the interval log
                // adds up to the `.hgrm` exactly.
                let us = now.duration_since(*t).as_micros().clamp(1, 3_600_000_000) as u64;
                for h in [&mut h.ack, &mut h.ack_sec].into_iter().flatten() {
                    let _ = h.record(us);
                }
            }
        }
    }
}

/// Intended send times of the valid first sends not yet seen in the
/// journal, by the generator's sequence number: a window from the oldest
/// one still pending, since sequence numbers only grow. Insert and remove
/// are O(1) at 16 bytes a slot; the map keyed by id strings it replaces
/// cost about 4 % of an in-process run's CPU (inserts, string hashing and
/// compares), which the pipeline under test then did not get.
#[derive(Default)]
pub(super) struct Pending {
    /// The run's id prefix (`Workload::id_prefix`): ids from the journal
    /// without it, or without a number after it, are not this run's.
    prefix: String,
    /// The sequence number of `slots[0]`.
    base: u64,
    /// Empty, or its first slot is pending: `remove` drops the slots
    /// before the oldest pending one, so empty means nothing is pending.
    slots: VecDeque<Option<Instant>>,
}

impl Pending {
    pub(super) fn new(prefix: String) -> Self {
        Self {
            prefix,
            ..Self::default()
        }
    }

    /// Records the intended send time of command `seq`. Sequence numbers
    /// below the window (already seen, or never sent) are ignored.
    pub(super) fn insert(&mut self, seq: u64, at: Instant) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        let i = i as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(at);
    }

    /// The intended send time of the command with this interaction id, if
    /// it is pending; it is pending no more.
    pub(super) fn remove(&mut self, interaction_id: &str) -> Option<Instant> {
        let seq: u64 = interaction_id.strip_prefix(&self.prefix)?.parse().ok()?;
        let i = seq.checked_sub(self.base)? as usize;
        let at = self.slots.get_mut(i)?.take()?;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(at)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[cfg(test)]
    fn window(&self) -> usize {
        self.slots.len()
    }
}

/// The per-second histograms of the run, as interval logs: the seconds
/// are the snapshots' (`snapshot`), each from the one before.
pub(super) struct Intervals {
    pub(super) ack: IntervalLog,
    pub(super) e2e: IntervalLog,
    /// The run's start: the logs' timestamps count from it.
    start: Instant,
    /// The start of the interval being recorded.
    from: Instant,
}

impl Intervals {
    pub(super) fn new(start: Instant) -> Self {
        Self {
            ack: IntervalLog::default(),
            e2e: IntervalLog::default(),
            start,
            from: start,
        }
    }

    /// Closes the interval at `now` with these histograms. An interval
    /// that cannot be serialized is left out of the log, with a line on
    /// stderr: the run and its other figures go on.
    fn close(&mut self, now: Instant, ack: Option<&Histogram<u64>>, e2e: Option<&Histogram<u64>>) {
        let start: Duration = self.from.duration_since(self.start);
        let length = now.duration_since(self.from);
        for (log, h) in [(&mut self.ack, ack), (&mut self.e2e, e2e)] {
            if let Some(h) = h {
                if let Err(e) = log.push(h, start, length) {
                    eprintln!("\nloadgen: an interval left out of the histogram log: {e:#}");
                }
            }
        }
        self.from = now;
    }

    /// Closes the last, partial interval (from the last snapshot to now),
    /// if anything was recorded in it: the intervals then add up to the
    /// whole run's histograms.
    pub(super) fn finish(&mut self, shared: &Shared) {
        let rest = shared
            .hists
            .lock()
            .ok()
            .map(|mut h| (h.ack_sec.take(), h.e2e_sec.take()));
        if let Some((ack, e2e)) = rest {
            let recorded = |h: &Option<Histogram<u64>>| h.as_ref().is_some_and(|h| !h.is_empty());
            if recorded(&ack) || recorded(&e2e) {
                self.close(Instant::now(), ack.as_ref(), e2e.as_ref());
            }
        }
    }
}

/// The per-second timeline as it is closed, with what one second carries
/// to the next: the counters' last values, the CPU reading, the interval
/// histograms.
pub(super) struct Timeline {
    pub seconds: Vec<Second>,
    pub intervals: Intervals,
    /// The second to close next (1 = the first).
    pub next: u64,
    last: (u64, u64, u64, u64),
    cpu: Option<CpuTimes>,
}

impl Timeline {
    pub fn new(start: Instant) -> Self {
        Timeline {
            seconds: Vec::new(),
            intervals: Intervals::new(start),
            next: 1,
            last: (0, 0, 0, 0),
            cpu: CpuTimes::read(),
        }
    }

    /// Closes second `next`, whose target rate was `rate`, and returns it.
    pub fn close(&mut self, shared: &Shared, rate: f64) -> &Second {
        let s = snapshot(
            shared,
            &mut self.last,
            &mut self.cpu,
            self.next,
            rate,
            &mut self.intervals,
        );
        self.next += 1;
        let i = self.seconds.len();
        self.seconds.push(s);
        &self.seconds[i]
    }
}

/// Second `t` of the run: the counters since `last` and the machine's CPU
/// since `cpu` (both then move on to now), and the second's percentiles.
/// The second's histograms are swapped for empty ones under the lock
/// (allocated before it: the senders and the observer wait on it) and
/// go to `intervals` after it.
fn snapshot(
    shared: &Shared,
    last: &mut (u64, u64, u64, u64),
    cpu: &mut Option<CpuTimes>,
    t: u64,
    rate: f64,
    intervals: &mut Intervals,
) -> Second {
    let now = (
        shared.sent.load(Relaxed),
        shared.acked.load(Relaxed),
        shared.persisted.load(Relaxed),
        shared.errors.load(Relaxed),
    );
    let mut s = Second {
        t,
        target_rate: rate,
        sent: now.0 - last.0,
        acked: now.1 - last.1,
        persisted: now.2 - last.2,
        errors: now.3 - last.3,
        ..Second::default()
    };
    *last = now;
    let cpu_now = CpuTimes::read();
    s.cpu_busy_pct = cpu_now.zip(*cpu).and_then(|(n, p)| n.busy_pct_since(&p));
    *cpu = cpu_now;
    let (fresh_ack, fresh_e2e) = (hist(), hist());
    let second = shared.hists.lock().ok().map(|mut h| {
        (
            std::mem::replace(&mut h.ack_sec, fresh_ack),
            std::mem::replace(&mut h.e2e_sec, fresh_e2e),
        )
    });
    let closed = Instant::now();
    let ms = |h: &Histogram<u64>, q| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    if let Some((ack, e2e)) = second {
        if let Some(a) = &ack {
            (s.ack_p50_ms, s.ack_p99_ms) = (ms(a, 0.5), ms(a, 0.99));
        }
        if let Some(e) = &e2e {
            (s.e2e_p50_ms, s.e2e_p99_ms) = (ms(e, 0.5), ms(e, 0.99));
        }
        intervals.close(closed, ack.as_ref(), e2e.as_ref());
    }
    s
}

pub(super) fn progress(s: &Second, shared: &Shared) {
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\rt={:>4}s sent={} acked={} persisted={} errors={} retries={} dropped={} rate={}/s ack_p99={:.1}ms e2e_p99={:.1}ms   ",
        s.t,
        shared.sent.load(Relaxed),
        shared.acked.load(Relaxed),
        shared.persisted.load(Relaxed),
        shared.errors.load(Relaxed),
        shared.retries.load(Relaxed),
        shared.dropped.load(Relaxed),
        s.acked,
        s.ack_p99_ms,
        s.e2e_p99_ms,
    );
    let _ = err.flush();
}

/// Resident memory of this process in MiB (Linux; 0 elsewhere).
pub fn rss_mib() -> f64 {
    crate::process::resident_bytes().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0))
}

/// Subscribed to the writer's commits (like a projector), records the
/// end-to-end latency of the commands this run is waiting for.
pub(super) struct Observer;

/// The observer's key among the writer's subscribers.
pub(super) const OBSERVER_KEY: &str = "loadgen/observer";

impl ractor::Actor for Observer {
    type Msg = Committed;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Arc<Shared>, ractor::ActorProcessingErr> {
        Ok(shared)
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        msg: Self::Msg,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let Committed(records) = msg;
        let now = Instant::now();
        let mut seen = Vec::new();
        if let Ok(mut pending) = shared.pending.lock() {
            for r in records.iter() {
                if let JournalRecord::Event(e) = r {
                    if let Some(t) = pending.remove(&e.event.interaction_id) {
                        seen.push(t);
                    }
                }
            }
        }
        shared.persisted.fetch_add(seen.len() as u64, Relaxed);
        if let Ok(mut h) = shared.hists.lock() {
            for t in seen {
                let us = now.duration_since(t).as_micros().clamp(1, 3_600_000_000) as u64;
                if let Some(e) = h.e2e.as_mut() {
                    let _ = e.record(us);
                }
                if let Some(e) = h.e2e_sec.as_mut() {
                    let _ = e.record(us);
                }
            }
        }
        Ok(())
    }
}

/// The median of some values (the lower middle one for an even count);
/// `None` for none.
pub(super) fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::{median, Pending};
    use std::time::{Duration, Instant};

    #[test]
    fn pending_finds_each_command_once_by_its_id() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let mut p = Pending::new("lg-run-".into());
        assert!(p.is_empty());
        // 3 and 6 are gaps (invalid, duplicate or dropped: never pending).
        for seq in [1, 2, 4, 5, 7] {
            p.insert(seq, at(seq));
        }
        assert!(!p.is_empty());
        assert_eq!(p.remove("lg-run-4"), Some(at(4)));
        assert_eq!(p.remove("lg-run-4"), None, "seen once");
        assert_eq!(p.remove("lg-run-3"), None, "never sent");
        assert_eq!(p.remove("lg-other-1"), None, "another run's id");
        assert_eq!(p.remove("lg-run-x1"), None);
        assert_eq!(p.remove("lg-run-99"), None);
        assert_eq!(p.window(), 7, "1 is still pending");
        assert_eq!(p.remove("lg-run-1"), Some(at(1)));
        assert_eq!(p.window(), 6, "the window starts at 2");
        assert_eq!(p.remove("lg-run-2"), Some(at(2)));
        assert_eq!(p.window(), 3, "from 5: 3 and 4 are behind it");
        assert_eq!(p.remove("lg-run-7"), Some(at(7)));
        assert_eq!(p.remove("lg-run-5"), Some(at(5)));
        assert!(p.is_empty());
        assert_eq!(p.window(), 0);
        // Seen already, below the window: ignored, not pending again.
        p.insert(10, at(10));
        p.insert(9, at(9));
        assert_eq!(p.remove("lg-run-9"), None);
        assert_eq!(p.remove("lg-run-10"), Some(at(10)));
        assert!(p.is_empty());
    }

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median(std::iter::empty()), None);
    }
}
