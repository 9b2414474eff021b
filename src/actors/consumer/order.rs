//! Per-user order under retries. A delivery that failed transiently waits
//! for its back-off ("parked"); a newer delivery of the same user must not
//! overtake it, or the user's events would be persisted out of order. So a
//! newer delivery of a user with a parked delivery is "held": not sent to
//! the aggregate, and released together with the parked one when it is
//! dispatched again (in delivery order), or on the next tick once the user
//! has nothing parked any more (e.g. the parked one was dead-lettered).
//! Deliveries already in the aggregate's mailbox when a batch fails are
//! refused by the aggregate (`Retry`) and come back the same way.

use super::InFlight;
use std::collections::{HashMap, HashSet};

fn user(f: &InFlight) -> Option<&str> {
    f.work.as_ref().map(|w| w.command.user_id.as_str())
}

/// Users with a delivery waiting for a retry, other than those in `batch`.
pub(super) fn parked_users(in_flight: &HashMap<u64, InFlight>, batch: &[u64]) -> HashSet<String> {
    let batch: HashSet<u64> = batch.iter().copied().collect();
    in_flight
        .iter()
        .filter(|(id, f)| !f.dispatched && !f.held && !batch.contains(id))
        .filter_map(|(_, f)| user(f).map(str::to_owned))
        .collect()
}

/// The deliveries to dispatch again: `ids` plus every other waiting
/// delivery of their users (held, or parked with a later back-off: the
/// aggregate refuses batches that would overtake its oldest failed one),
/// released, in delivery order.
pub(super) fn with_held(in_flight: &mut HashMap<u64, InFlight>, mut ids: Vec<u64>) -> Vec<u64> {
    let users: HashSet<String> = ids
        .iter()
        .filter_map(|id| in_flight.get(id).and_then(user).map(str::to_owned))
        .collect();
    for (id, f) in in_flight.iter_mut() {
        if !f.dispatched && user(f).is_some_and(|u| users.contains(u)) {
            f.held = false;
            ids.push(*id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Held deliveries whose user has nothing parked any more, released, in
/// delivery order.
pub(super) fn releasable(in_flight: &mut HashMap<u64, InFlight>) -> Vec<u64> {
    if !in_flight.values().any(|f| f.held) {
        return Vec::new();
    }
    let parked = parked_users(in_flight, &[]);
    let mut ids: Vec<u64> = in_flight
        .iter_mut()
        .filter(|(_, f)| f.held && user(f).is_some_and(|u| !parked.contains(u)))
        .map(|(id, f)| {
            f.held = false;
            *id
        })
        .collect();
    ids.sort_unstable();
    ids
}
