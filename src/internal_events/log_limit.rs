//! Rate limit of repetitive warnings (as Vector's `internal_log_rate_limit`).
//!
//! During a store outage every retry of every delivery was a `WARN` line:
//! about 12,000 per worker in the long store-outage scenario, which buries
//! the lines an operator needs. Now the first occurrence of a warning (per
//! site and bounded key, such as the partition) is logged, then at most one
//! per [`WINDOW`], carrying in `suppressed` how many were not logged since
//! the previous line. The metrics still count every occurrence.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// At most one line per site and key in this long.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One site and key's state.
#[derive(Debug, Default)]
pub struct Limiter {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Limiter {
    /// `Some(n)` when the occurrence at `now` is to be logged (`n`: those
    /// suppressed since the previous line), `None` when it is suppressed.
    pub fn check(&mut self, now: Instant, window: Duration) -> Option<u64> {
        match self.last_logged {
            Some(t) if now.saturating_duration_since(t) < window => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Keys are bounded by the callers (a site name and a partition or
/// operation), so the map stays small.
static LIMITERS: LazyLock<Mutex<HashMap<(&'static str, u64), Limiter>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether this occurrence of `site` for `key` is logged now; see
/// [`Limiter::check`]. A poisoned lock is taken over (each update is a
/// few integer writes, never left half done).
pub fn allow(site: &'static str, key: u64) -> Option<u64> {
    let mut limiters = LIMITERS.lock().unwrap_or_else(|e| e.into_inner());
    limiters
        .entry((site, key))
        .or_default()
        .check(Instant::now(), WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_window_with_the_count_suppressed() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let window = Duration::from_secs(10);
        let mut l = Limiter::default();
        assert_eq!(l.check(at(0), window), Some(0));
        for ms in [1, 500, 9_999] {
            assert_eq!(l.check(at(ms), window), None);
        }
        assert_eq!(l.check(at(10_000), window), Some(3));
        assert_eq!(l.check(at(10_001), window), None);
        // A quiet stretch: the next one is logged at once.
        assert_eq!(l.check(at(60_000), window), Some(1));
        assert_eq!(l.check(at(60_001), window), None);
    }

    #[test]
    fn sites_and_keys_are_limited_apart() {
        // Site names of this test only: other tests may log meanwhile.
        assert!(allow("test_site_a", 1).is_some());
        assert!(allow("test_site_a", 1).is_none());
        assert!(allow("test_site_a", 2).is_some(), "another key");
        assert!(allow("test_site_b", 1).is_some(), "another site");
    }
}
