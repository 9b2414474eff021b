//! The embedded and ScyllaDB stores' events: failed operations, repairs,
//! and the upgrade of the embedded store's format at open.

use super::{log_limit, STORE_ERRORS, STORE_REPAIRED};
use metrics::counter;

/// Logged at most once per operation per [`log_limit::WINDOW`];
/// `suppressed` counts those not logged since.
pub fn store_error(op: &'static str, error: &dyn std::fmt::Display) {
    counter!(STORE_ERRORS, "op" => op).increment(1);
    if let Some(suppressed) = log_limit::allow(op, 0) {
        tracing::warn!(op, %error, suppressed, "store operation failed");
    }
}

/// Loading a user found events a crash (or a failed write) left without
/// their indexes and projections; they are being completed now.
pub fn store_repair(events: u64) {
    counter!(STORE_REPAIRED).increment(events);
    tracing::info!(
        events,
        "completing the projections of events left unprojected"
    );
}

/// A step of the embedded store's format upgrade (`store::embedded::migrate`).
#[derive(Debug, Clone, Copy)]
pub enum Migration {
    /// About `estimate` events to convert.
    Started {
        estimate: u64,
    },
    /// At most one line per few seconds while it runs.
    Progress {
        converted: u64,
        estimate: u64,
    },
    Done {
        converted: u64,
        seconds: f64,
    },
}

pub fn store_migration(step: Migration) {
    match step {
        Migration::Started { estimate } => tracing::warn!(
            estimate,
            "embedded store: upgrading format 1 to 2; the service starts when it is done"
        ),
        Migration::Progress {
            converted,
            estimate,
        } => tracing::info!(converted, estimate, "embedded store: upgrading"),
        Migration::Done { converted, seconds } => {
            tracing::info!(converted, seconds, "embedded store: upgraded to format 2")
        }
    }
}
