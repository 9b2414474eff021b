//! Process health, shared by the pipeline (which reports into it) and the
//! front (which answers liveness and readiness from it): started, draining,
//! the store's commit outcomes over a window, consumers up, broker
//! connections, live aggregates. Ground level: the log, the actors and the
//! HTTP endpoint all import it, and it imports none of them.

mod commit_window;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

pub use commit_window::CommitWindow;

/// Process health shared by the actors and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    draining: AtomicBool,
    /// Group commit outcomes over a sliding window: readiness says "store
    /// unavailable" when nearly all of them failed (`commit_window`).
    commits: std::sync::Mutex<CommitWindow>,
    /// The last verdict of `commits`, for the readiness reads.
    store_failing: AtomicBool,
    consumers_up: AtomicU32,
    consumers_expected: AtomicU32,
    /// Broker consumers currently disconnected (Pulsar mode; 0 otherwise).
    broker_down: AtomicU32,
    live_aggregates: AtomicUsize,
    peak_aggregates: AtomicUsize,
}

impl Health {
    pub fn set_started(&self, partitions: u32) {
        self.consumers_expected.store(partitions, Ordering::SeqCst);
        self.started.store(true, Ordering::SeqCst);
        self.publish();
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.publish();
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    /// The result of a group commit.
    pub fn store_result(&self, ok: bool) {
        self.store_result_at(ok, std::time::Instant::now());
    }
    fn store_result_at(&self, ok: bool, now: std::time::Instant) {
        let failing = {
            let mut w = self.commits.lock().unwrap_or_else(|p| p.into_inner());
            w.record(ok, now);
            w.failing(now)
        };
        if self.store_failing.swap(failing, Ordering::SeqCst) != failing {
            self.publish();
        }
    }
    fn store_failing(&self) -> bool {
        self.store_failing.load(Ordering::SeqCst)
    }
    pub fn consumer_up(&self) {
        self.consumers_up.fetch_add(1, Ordering::SeqCst);
        self.publish();
    }
    pub fn consumer_down(&self) {
        let _ = self
            .consumers_up
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.publish();
    }
    /// A broker consumer lost its connection (Pulsar mode).
    pub fn broker_lost(&self) {
        self.broker_down.fetch_add(1, Ordering::SeqCst);
        self.publish();
    }
    /// A broker consumer is connected again.
    pub fn broker_restored(&self) {
        let _ = self
            .broker_down
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.publish();
    }
    /// Whether every broker consumer is connected (always true without a broker).
    pub fn broker_connected(&self) -> bool {
        self.broker_down.load(Ordering::SeqCst) == 0
    }
    /// Ready: started, every partition consumed, store answering, not draining.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && !self.store_failing()
            && self.broker_connected()
            && self.consumers_up.load(Ordering::SeqCst)
                >= self.consumers_expected.load(Ordering::SeqCst)
    }
    /// Why not ready, for the readiness endpoint.
    pub fn reason(&self) -> &'static str {
        if !self.started.load(Ordering::SeqCst) {
            "starting"
        } else if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if self.store_failing() {
            "store unavailable"
        } else if !self.broker_connected() {
            "broker disconnected"
        } else if self.consumers_up.load(Ordering::SeqCst)
            < self.consumers_expected.load(Ordering::SeqCst)
        {
            "consumers restarting"
        } else {
            "ready"
        }
    }
    /// Counts an aggregate spawned (+1) or stopped (-1).
    pub fn aggregates_changed(&self, delta: isize) {
        let now = if delta >= 0 {
            self.live_aggregates
                .fetch_add(delta as usize, Ordering::SeqCst)
                + delta as usize
        } else {
            let d = delta.unsigned_abs();
            self.live_aggregates
                .fetch_sub(d, Ordering::SeqCst)
                .saturating_sub(d)
        };
        self.peak_aggregates.fetch_max(now, Ordering::SeqCst);
    }
    /// Live aggregates now, and the most seen at once.
    pub fn aggregates(&self) -> (usize, usize) {
        (
            self.live_aggregates.load(Ordering::SeqCst),
            self.peak_aggregates.load(Ordering::SeqCst),
        )
    }
    fn publish(&self) {
        crate::internal_events::ready(self.is_ready());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn health_readiness() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.set_started(2);
        assert_eq!(h.reason(), "consumers restarting");
        h.consumer_up();
        h.consumer_up();
        assert!(h.is_ready());
        let t0 = std::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for ms in 0..10 {
            h.store_result_at(true, at(ms));
        }
        h.store_result_at(false, at(20));
        h.store_result_at(false, at(30));
        assert!(h.is_ready(), "isolated failures keep it ready");
        for ms in 0..100 {
            h.store_result_at(false, at(40 + ms));
        }
        assert_eq!(h.reason(), "store unavailable");
        for ms in 0..20 {
            h.store_result_at(true, at(200 + ms));
        }
        assert!(h.is_ready(), "commits succeed again");
        h.set_draining();
        assert!(!h.is_ready());
    }
}
