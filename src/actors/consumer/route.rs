//! Routing: decoded deliveries go to their user's queue, and a user's next
//! batch goes to its aggregate (spawned on demand, within the partition's
//! share of live aggregates).

use super::outcomes::{decode, record_rejections, rejection};
use super::{saga, ConsumerMsg, ConsumerState, InFlight, Work};
use crate::actors::aggregate::{AggregateArgs, AggregateMsg, UserAggregate};
use crate::domain::codec::Command;
use crate::domain::{RejectReason, TrackInteraction};
use crate::internal_events as ev;
use crate::log::Delivery;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use std::sync::Arc;

/// Decodes new deliveries and queues them per user (undecodable ones go
/// to the writer as rejections).
pub(super) async fn on_deliveries(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    batch: Vec<Delivery>,
) -> Result<(), ActorProcessingErr> {
    if state.draining.is_some() {
        // Read just before the drain: left unacknowledged, delivered again later.
        state.permits.add_permits(batch.len());
        return Ok(());
    }
    // The batch's users, by their commands (a reference count each, no
    // copy of the id).
    let mut users: Vec<Arc<TrackInteraction>> = Vec::new();
    let mut rejections = Vec::new();
    let mut rejected = Vec::new();
    // Counted per batch and format: one metric update per batch, not per command.
    let mut received: Vec<(&'static str, u64)> = Vec::new();
    for d in batch {
        if d.redelivery_count > 0 {
            ev::redelivered(state.partition, 1);
        }
        let id = d.id;
        let command = match decode(&d) {
            Ok(Command::Track(cmd)) if super::reroute::misrouted(state, &d, &cmd.user_id) => {
                tally(&mut received, cmd.format.as_str());
                state.flow.insert(InFlight {
                    delivery: d,
                    command: None,
                    attempts: 0,
                    failures: 0,
                    refused: None,
                });
                super::reroute::reroute(myself, state, id, cmd.user_id, cmd.interaction_id);
                continue;
            }
            Ok(Command::Track(cmd)) => {
                tally(&mut received, cmd.format.as_str());
                Some(Arc::new(cmd))
            }
            Ok(Command::BuildInteractionsInfo(b)) if state.sink.is_some() => {
                tally(&mut received, "build_interactions_info");
                state.flow.insert(InFlight {
                    delivery: d,
                    command: None,
                    attempts: 0,
                    failures: 0,
                    refused: None,
                });
                answer_saga(myself, state, id, b);
                continue;
            }
            Ok(Command::BuildInteractionsInfo(b)) => {
                tally(&mut received, "build_interactions_info");
                tracing::info!(saga_id = %b.saga_id, "BuildInteractionsInfo is answered in Pulsar mode only; acknowledged");
                rejections.push(rejection(
                    &d,
                    RejectReason::UnknownCommand,
                    "BuildInteractionsInfo needs the events topic (Pulsar mode)".into(),
                ));
                rejected.push((id, RejectReason::UnknownCommand));
                None
            }
            Err(e) => {
                tally(&mut received, "undecodable");
                ev::command_rejected(e.reason);
                rejections.push(rejection(&d, e.reason, e.message));
                rejected.push((id, e.reason));
                None
            }
        };
        if let Some(cmd) = &command {
            state.flow.enqueue(&cmd.user_id, id);
            if users.last().is_none_or(|u| u.user_id != cmd.user_id) {
                users.push(Arc::clone(cmd));
            }
        }
        let refused = rejected
            .last()
            .filter(|(r, _)| *r == id)
            .map(|(_, reason)| *reason);
        state.flow.insert(InFlight {
            delivery: d,
            command,
            attempts: 0,
            failures: 0,
            refused,
        });
    }
    for (format, n) in received {
        ev::commands_received(format, n);
    }
    users.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
    users.dedup_by(|a, b| a.user_id == b.user_id);
    for user in users {
        send_next(myself, state, &user.user_id).await?;
    }
    if !rejections.is_empty() {
        record_rejections(myself, state, rejections, rejected);
    }
    Ok(())
}

/// Counts one command of `format` in a batch's tally.
fn tally(received: &mut Vec<(&'static str, u64)>, format: &'static str) {
    match received.iter_mut().find(|(f, _)| *f == format) {
        Some((_, n)) => *n += 1,
        None => received.push((format, 1)),
    }
}

/// Answers a `BuildInteractionsInfo` on the events topic (Pulsar mode); the
/// outcome comes back as `Answered`.
pub(super) fn answer_saga(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    id: u64,
    request: crate::domain::codec::BuildInteractionsInfo,
) {
    let Some(sink) = state.sink.clone() else {
        return;
    };
    state.flow.settling(1);
    saga::answer(
        myself.clone(),
        state.store.clone(),
        sink,
        id,
        request,
        state.config.answer_timeout,
    );
}

/// Sends the user's next batch to its aggregate, if it may go now.
pub(super) async fn send_next(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    user_id: &str,
) -> Result<(), ActorProcessingErr> {
    let works = state.flow.next_batch(user_id, |id, f| {
        let f = f?;
        Some(Work {
            delivery_id: id,
            command: f.command.clone()?,
            published_at_ms: f.delivery.published_at_ms,
            source: f.delivery.source(),
        })
    });
    let Some(works) = works else {
        state.flow.forget_idle(user_id);
        return Ok(());
    };
    match state.aggregates.get(user_id) {
        Some(actor) => actor.send_message(AggregateMsg::Commands(works))?,
        None => to_new_aggregate(myself, state, user_id, works).await?,
    }
    state.aggregates.dispatched(user_id, 1);
    Ok(())
}

/// Sends a user without a live aggregate its first batch: to the actor
/// passivated to make room, rebound to this user in the same message
/// (`AggregateMsg::Rebind`), or else to a new actor.
async fn to_new_aggregate(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    user_id: &str,
    works: Vec<Work>,
) -> Result<(), ActorProcessingErr> {
    // Counts what it passivates (`tracking_aggregates_passivated_total`);
    // a spare actor is already recorded as this user's.
    let (_, spare) = state.aggregates.make_room_for(user_id);
    let works = match spare {
        None => works,
        Some(actor) => match rebind(&actor, user_id, works)? {
            None => return Ok(()),
            Some(works) => {
                state.aggregates.remove_by_id(actor.get_id());
                works
            }
        },
    };
    let args = AggregateArgs {
        user_id: user_id.to_string(),
        store: state.store.clone(),
        names: state.names.clone(),
        consumer: state.reports.clone(),
        processing: state.processing.clone(),
    };
    let (actor, _handle) =
        Actor::spawn_linked(None, UserAggregate, args, myself.get_cell()).await?;
    state.aggregates.insert(user_id, actor.clone());
    actor.send_message(AggregateMsg::Commands(works))?;
    Ok(())
}

/// Sends `actor` to serve `user_id` from now on, with the user's first
/// batch. `None` once sent; the batch back if the actor stopped meanwhile
/// (its supervision event is on its way), for a new actor.
pub(in crate::actors) fn rebind(
    actor: &ActorRef<AggregateMsg>,
    user_id: &str,
    works: Vec<Work>,
) -> Result<Option<Vec<Work>>, MessagingErr<AggregateMsg>> {
    let rebind = AggregateMsg::Rebind {
        user_id: user_id.to_string(),
        works,
    };
    match actor.send_message(rebind) {
        Ok(()) => Ok(None),
        Err(MessagingErr::SendErr(AggregateMsg::Rebind { works, .. })) => Ok(Some(works)),
        Err(e) => Err(e),
    }
}
