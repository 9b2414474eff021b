//! Upgrades of the embedded store's on-disk format, at open, in order
//! (1 to 2, then 2 to 3; 3 to 4 converts nothing, see the parent's
//! `FORMAT_VERSION`). Each is resumable: a crash midway loses
//! nothing, and the next open goes on from what the last one recorded.

mod v2;
mod v3;

pub(super) use v2::v1_to_v2;
pub(super) use v3::v2_to_v3;

use crate::internal_events as ev;
use std::time::{Duration, Instant};

/// At most one progress line per this interval.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The log lines of work done at open (an upgrade, indexing after a
/// crash): a start with an estimate, progress at most every
/// [`PROGRESS_EVERY`], and the end with the count and seconds.
pub(super) struct Progress {
    what: &'static str,
    estimate: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub(super) fn start(what: &'static str, estimate: u64) -> Self {
        ev::store_migration(ev::Migration::Started { what, estimate });
        let now = Instant::now();
        Progress {
            what,
            estimate,
            started: now,
            last: now,
        }
    }

    pub(super) fn at(&mut self, converted: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            ev::store_migration(ev::Migration::Progress {
                what: self.what,
                converted,
                estimate: self.estimate,
            });
        }
    }

    pub(super) fn done(self, converted: u64) {
        ev::store_migration(ev::Migration::Done {
            what: self.what,
            converted,
            seconds: self.started.elapsed().as_secs_f64(),
        });
    }
}
