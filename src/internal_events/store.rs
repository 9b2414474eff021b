//! The embedded and ScyllaDB stores' events: failed operations, repairs,
//! and the upgrade of the embedded store's format at open.

use super::{log_limit, FOLD_LEASES, STORE_ERRORS, STORE_FOLDED};
use metrics::{counter, gauge};

/// Logged at most once per operation per [`log_limit::WINDOW`];
/// `suppressed` counts those not logged since.
pub fn store_error(op: &'static str, error: &dyn std::fmt::Display) {
    counter!(STORE_ERRORS, "op" => op).increment(1);
    if let Some(suppressed) = log_limit::allow(op, 0) {
        tracing::warn!(op, %error, suppressed, "store operation failed");
    }
}

/// A follower folded `n` records of a command-log partition.
pub fn folded(partition: u32, n: u64) {
    counter!(STORE_FOLDED, "partition" => partition.to_string()).increment(n);
}

/// This worker took (`true`) or lost a partition's follower lease.
pub fn fold_lease(partition: u32, held: bool) {
    gauge!(FOLD_LEASES).increment(if held { 1.0 } else { -1.0 });
    tracing::info!(partition, held, "follower lease");
}

/// A follower's step failed (retried on its next tick); logged at most
/// once per partition and [`log_limit::WINDOW`].
pub fn fold_failed(partition: u32, what: &'static str, error: &dyn std::fmt::Display) {
    counter!(STORE_ERRORS, "op" => "fold").increment(1);
    if let Some(suppressed) = log_limit::allow("fold", u64::from(partition)) {
        tracing::warn!(partition, what, %error, suppressed, "follower step failed; retrying");
    }
}

/// The embedded store's journal ends before records its indexes hold
/// (files deleted, restored from an older backup, cut short): the derived
/// data is dropped and derived again from what the journal still has.
pub fn store_journal_lost(indexed: u64, head: u64) {
    tracing::error!(
        indexed,
        journal_head = head,
        "embedded store: the journal lost acknowledged records (its indexes reach \
         {indexed}, the journal ends at {head}); the indexes and projections are \
         derived again from what it still holds"
    );
}

/// A step of the work the embedded store does at open before it serves:
/// a format upgrade (`store::embedded::migrate`), or indexing the
/// journal's records the indexes had not made durable before a crash
/// (`store::embedded::index`). `what` names it ("upgrading format 2 to 3").
#[derive(Debug, Clone, Copy)]
pub enum Migration {
    /// About `estimate` records to go through.
    Started { what: &'static str, estimate: u64 },
    /// At most one line per few seconds while it runs.
    Progress {
        what: &'static str,
        converted: u64,
        estimate: u64,
    },
    Done {
        what: &'static str,
        converted: u64,
        seconds: f64,
    },
}

pub fn store_migration(step: Migration) {
    match step {
        Migration::Started { what, estimate } => tracing::warn!(
            estimate,
            "embedded store: {what}; the service starts when it is done"
        ),
        Migration::Progress {
            what,
            converted,
            estimate,
        } => {
            let percent = if estimate == 0 {
                100.0
            } else {
                (converted as f64 * 100.0 / estimate as f64).min(100.0)
            };
            tracing::info!(converted, estimate, percent, "embedded store: {what}")
        }
        Migration::Done {
            what,
            converted,
            seconds,
        } => tracing::info!(converted, seconds, "embedded store: {what}: done"),
    }
}
