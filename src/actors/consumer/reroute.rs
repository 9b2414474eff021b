//! Commands that reached this partition although their user's commands
//! belong to another one, or keyed by something other than their user.
//!
//! A store that appends without a condition
//! ([`JournalGuard::Deterministic`](crate::store::JournalGuard)) relies on
//! one consumer at a time holding a user's commands: the log's routing
//! (every command of a user in the user's partition) and the broker's
//! Key_Shared dispatch (each key to one consumer at a time, in order). A
//! producer that routes by another hash, or keys a message by something
//! else (the original hand test keys by `test`), would let two consumers
//! decide for one user at once. Such a command is not decided here: it is
//! published again to its user's partition, keyed by the user, with its
//! interaction id as `commandId` (so a second copy, after a crash between
//! the publish and the acknowledgement, is a duplicate), and acknowledged
//! once the log confirmed the copy.

use super::{ConsumerMsg, ConsumerState};
use crate::internal_events as ev;
use crate::log::{Delivery, NewRecord};
use ractor::ActorRef;

/// Whether a delivered command of `user` must go to its user's partition.
pub(super) fn misrouted(state: &ConsumerState, d: &Delivery, user: &str) -> bool {
    state.reroute
        && (state.log.partition_of(user) != state.partition || d.key.as_deref() != Some(user))
}

/// Publishes delivery `id` again to its user's partition; the result
/// comes back as `Rerouted`.
pub(super) fn reroute(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    id: u64,
    user: String,
    interaction_id: String,
) {
    let Some(f) = state.flow.get(id) else {
        return;
    };
    let mut properties = f.delivery.properties.clone();
    properties.insert("commandId".into(), interaction_id);
    let record = NewRecord {
        key: user,
        payload: f.delivery.payload.clone(),
        properties,
    };
    state.flow.settling(1);
    let (log, me) = (state.log.clone(), myself.clone());
    tokio::spawn(async move {
        let result = log
            .append(vec![record])
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        let _ = me.send_message(ConsumerMsg::Rerouted { id, result });
    });
}

/// The copy is in its user's partition: acknowledge the original; or try
/// again after a back-off.
pub(super) async fn on_rerouted(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    id: u64,
    result: Result<(), String>,
) -> Result<(), ractor::ActorProcessingErr> {
    state.flow.settling(-1);
    match result {
        Ok(()) => {
            ev::rerouted(state.partition);
            super::outcomes::ack(state, &[id]).await?;
        }
        Err(error) => {
            let delay = state.retry_delay(id, &error);
            myself.send_after(delay, move || ConsumerMsg::Reroute(id));
        }
    }
    Ok(())
}
