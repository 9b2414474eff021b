//! Whether the store is failing, for readiness: the outcomes of the group
//! commits over a sliding window, not the last few in a row.
//!
//! Catching up on a backlog after a store outage, a busy store answers
//! some commits late (timeouts, retried) and the rest in time; counting
//! failures in a row took such a worker out of its Service for minutes
//! while it was making progress. Readiness should say "this worker cannot
//! persist", which is what a window where (nearly) every commit failed
//! says: at least [`MIN_FAILURES`] failures and at least
//! [`FAILING_PERCENT`] % of the commits in the last [`WINDOW_SECONDS`].

use std::time::Instant;

/// Length of the window, in one-second buckets.
pub const WINDOW_SECONDS: usize = 20;
/// Failures needed in the window before the store counts as failing.
pub const MIN_FAILURES: u32 = 3;
/// Share of the window's commits that must have failed.
pub const FAILING_PERCENT: u32 = 90;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Seconds since the window's epoch this bucket counts.
    second: u64,
    ok: u32,
    failed: u32,
}

/// Commit outcomes per second over the last [`WINDOW_SECONDS`].
#[derive(Debug)]
pub struct CommitWindow {
    epoch: Instant,
    buckets: [Bucket; WINDOW_SECONDS],
}

impl Default for CommitWindow {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl CommitWindow {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            buckets: [Bucket::default(); WINDOW_SECONDS],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Counts one commit's outcome at `now`.
    pub fn record(&mut self, ok: bool, now: Instant) {
        let second = self.second(now);
        let b = &mut self.buckets[(second % WINDOW_SECONDS as u64) as usize];
        if b.second != second {
            *b = Bucket {
                second,
                ..Bucket::default()
            };
        }
        if ok {
            b.ok = b.ok.saturating_add(1);
        } else {
            b.failed = b.failed.saturating_add(1);
        }
    }

    /// Whether nearly every commit of the window failed (see the module docs).
    pub fn failing(&self, now: Instant) -> bool {
        let second = self.second(now);
        let (ok, failed) = self
            .buckets
            .iter()
            .filter(|b| b.second + (WINDOW_SECONDS as u64) > second && b.second <= second)
            .fold((0u64, 0u64), |(o, f), b| {
                (o + u64::from(b.ok), f + u64::from(b.failed))
            });
        failed >= u64::from(MIN_FAILURES)
            && failed * 100 >= (ok + failed) * u64::from(FAILING_PERCENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_store_that_fails_every_commit_is_failing_after_three() {
        let t0 = Instant::now();
        let mut w = CommitWindow::new(t0);
        w.record(false, at(t0, 0));
        w.record(false, at(t0, 100));
        assert!(
            !w.failing(at(t0, 200)),
            "two failures are not yet an outage"
        );
        w.record(false, at(t0, 300));
        assert!(w.failing(at(t0, 400)));
        // One success among many failures is still an outage.
        for ms in 0..30 {
            w.record(false, at(t0, 400 + ms));
        }
        w.record(true, at(t0, 500));
        assert!(w.failing(at(t0, 600)));
    }

    #[test]
    fn a_busy_store_that_answers_some_commits_is_not_failing() {
        // Given a backlog: of every four commits, three time out
        let t0 = Instant::now();
        let mut w = CommitWindow::new(t0);
        for i in 0..400u64 {
            w.record(i % 4 == 0, at(t0, i * 100));
            // Then readiness never flaps
            assert!(!w.failing(at(t0, i * 100)), "at {} ms", i * 100);
        }
    }

    #[test]
    fn failures_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut w = CommitWindow::new(t0);
        for ms in 0..5 {
            w.record(false, at(t0, ms));
        }
        assert!(w.failing(at(t0, 10)));
        let later = Duration::from_secs(WINDOW_SECONDS as u64 + 1);
        assert!(!w.failing(t0 + later), "a quiet window is not failing");
        // An outage after a healthy stretch shows once its failures dominate.
        let t1 = t0 + later;
        for ms in 0..20 {
            w.record(true, at(t1, ms));
        }
        for s in 1..=WINDOW_SECONDS as u64 {
            w.record(false, t1 + Duration::from_secs(s));
        }
        assert!(w.failing(t1 + Duration::from_secs(WINDOW_SECONDS as u64)));
    }
}
