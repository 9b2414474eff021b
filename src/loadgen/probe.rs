//! The run's probes: shared counters and HDR histograms, the observer of
//! committed records (end-to-end latency), the per-second snapshot and
//! progress line, and the process's resident memory.

use super::report::Second;
use crate::process::CpuTimes;
use crate::store::JournalRecord;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub(super) pending: Mutex<HashMap<String, Instant>>,
    pub(super) stop: AtomicBool,
}

impl Shared {
    pub(super) fn ack(&self, n: u64, intended: &[Instant]) {
        self.acked.fetch_add(n, Relaxed);
        if let Ok(mut h) = self.hists.lock() {
            for t in intended {
                Hists::record(&mut h.ack, *t);
                Hists::record(&mut h.ack_sec, *t);
            }
        }
    }
}

/// Second `t` of the run: the counters since `last` and the machine's CPU
/// since `cpu` (both then move on to now), and the second's percentiles.
pub(super) fn snapshot(
    shared: &Shared,
    last: &mut (u64, u64, u64, u64),
    cpu: &mut Option<CpuTimes>,
    t: u64,
    rate: f64,
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
    if let Ok(mut h) = shared.hists.lock() {
        let ms = |h: &Histogram<u64>, q| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        if let Some(a) = h.ack_sec.as_mut() {
            (s.ack_p50_ms, s.ack_p99_ms) = (ms(a, 0.5), ms(a, 0.99));
            a.reset();
        }
        if let Some(e) = h.e2e_sec.as_mut() {
            (s.e2e_p50_ms, s.e2e_p99_ms) = (ms(e, 0.5), ms(e, 0.99));
            e.reset();
        }
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

/// Receives every committed journal record (like a projector) and records
/// the end-to-end latency of the commands this run is waiting for.
pub(super) struct Observer;

impl ractor::Actor for Observer {
    type Msg = crate::actors::projector::ProjectorMsg;
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
        let crate::actors::projector::ProjectorMsg::Committed(records) = msg else {
            return Ok(());
        };
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
    use super::median;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median(std::iter::empty()), None);
    }
}
