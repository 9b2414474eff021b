//! What happens to deliveries once they have an outcome: acknowledgement
//! (refused ones dead-lettered first), retries after a back-off, giving up
//! after `max_deliveries`, recording rejections through the writer, and the
//! end of a drain.

use super::{send_next, ConsumerMsg, ConsumerState, Outcome};
use crate::actors::writer::{Pending, Requester, WriteFailed, WriteReply, WriterMsg};
use crate::domain::codec::{decode_command, derived_id, Command, MessageMeta};
use crate::domain::{RejectReason, Rejection};
use crate::internal_events as ev;
use crate::log::{Delivery, Source};
use chrono::{TimeZone, Utc};
use ractor::{ActorProcessingErr, ActorRef};

/// A rejection of a delivery, stamped with its publish time (the same on
/// every delivery, so recording it again writes the same record), and
/// where it is in the command log.
pub(super) fn rejection(d: &Delivery, reason: RejectReason, detail: String) -> (Rejection, Source) {
    let rejection = Rejection {
        command_id: derived_id(&d.identity),
        reason,
        detail,
        rejected_at: published_at(d),
    };
    (rejection, d.source())
}

fn published_at(d: &Delivery) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(d.published_at_ms)
        .single()
        .unwrap_or_else(Utc::now)
}

pub(super) fn decode(d: &Delivery) -> Result<Command, crate::domain::codec::DecodeError> {
    let meta = MessageMeta {
        key: d.key.as_deref(),
        properties: Some(&d.properties),
        identity: &d.identity,
        published_at: published_at(d),
    };
    decode_command(&d.payload, &meta)
}

/// Sends rejections to the writer; the answer comes back as `Settled`.
pub(super) fn record_rejections(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    rejections: Vec<(Rejection, Source)>,
    items: Vec<(u64, RejectReason)>,
) {
    state.flow.settling(items.len() as isize);
    let (rejections, rejection_sources): (Vec<Rejection>, Vec<Source>) =
        rejections.into_iter().unzip();
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<WriteReply, WriteFailed>>();
    let sent = match state.names.writer() {
        Some(w) => w
            .send_message(WriterMsg::Write(Pending::new(
                None,
                rejections,
                rejection_sources,
                Vec::new(),
                Requester::Waiting(tx.into()),
            )))
            .is_ok(),
        None => false,
    };
    let me = myself.clone();
    // No timer, as for the aggregates' writes (aggregate.rs): the writer
    // answers, or drops the reply port when it stops.
    tokio::spawn(async move {
        let result = match (sent, rx.await) {
            (true, Ok(Ok(_))) => Ok(()),
            (true, Ok(Err(f))) => Err(f),
            _ => Err(WriteFailed {
                retryable: true,
                message: "journal writer unavailable".into(),
            }),
        };
        let _ = me.send_message(ConsumerMsg::Settled { items, result });
    });
}

/// Acts on a user's outcomes: acknowledge (dead-lettering refused commands
/// first), or put back for a retry after a back-off, or give up on a
/// delivery whose processing failed `max_deliveries` times.
pub(super) async fn on_outcomes(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    user_id: &str,
    outcomes: Vec<(u64, Outcome)>,
) -> Result<(), ActorProcessingErr> {
    let mut acked = Vec::new();
    let mut retry = Vec::new();
    let mut attempt = 0;
    let mut last_error = String::new();
    let mut dead = Vec::new();
    for (id, outcome) in outcomes {
        let outcome = dead_letter_if_rejected(state, id, outcome).await;
        let Some(f) = state.flow.get_mut(id) else {
            continue;
        };
        match outcome {
            Outcome::Persisted | Outcome::Duplicate | Outcome::Rejected(_) | Outcome::Answered => {
                acked.push(id)
            }
            Outcome::Retry { retryable, error } => {
                f.attempts += 1;
                if !retryable {
                    f.failures += 1;
                }
                if !retryable
                    && f.failures + f.delivery.redelivery_count >= state.config.max_deliveries
                {
                    dead.push(id);
                } else {
                    attempt = attempt.max(f.attempts);
                    last_error = error;
                    retry.push(id);
                }
            }
        }
    }
    ack(state, &acked).await?;
    if !dead.is_empty() {
        give_up(myself, state, dead);
    }
    if !retry.is_empty() {
        if state.draining.is_some() {
            // Not acknowledged: delivered again after the restart.
            for id in &retry {
                state.flow.remove(*id);
            }
            state.permits.add_permits(retry.len());
        } else if state.flow.back_off(user_id, &retry) {
            let delay = state.config.backoff(attempt);
            ev::retry_scheduled(state.partition, retry.len(), delay, &last_error);
            let user = user_id.to_string();
            myself.send_after(delay, move || ConsumerMsg::Resume(user));
        }
    }
    if state.draining.is_none() {
        send_next(myself, state, user_id).await?;
    } else {
        state.flow.forget_idle(user_id);
    }
    Ok(())
}

/// Outcomes of deliveries that never reached an aggregate.
pub(super) async fn settle_rejections(
    myself: &ActorRef<ConsumerMsg>,
    state: &mut ConsumerState,
    outcomes: Vec<(u64, Outcome)>,
) -> Result<(), ActorProcessingErr> {
    let mut acked = Vec::new();
    let mut again = Vec::new();
    for (id, outcome) in outcomes {
        match dead_letter_if_rejected(state, id, outcome).await {
            Outcome::Retry { .. } => again.push(id),
            _ => acked.push(id),
        }
    }
    ack(state, &acked).await?;
    if !again.is_empty() {
        // The writer could not record them: again after a back-off (records
        // of rejections are idempotent).
        let mut attempt = 0;
        for id in &again {
            if let Some(f) = state.flow.get_mut(*id) {
                f.attempts += 1;
                attempt = attempt.max(f.attempts);
            }
        }
        let delay = state.config.backoff(attempt);
        ev::retry_scheduled(
            state.partition,
            again.len(),
            delay,
            &"recording rejections failed",
        );
        myself.send_after(delay, move || ConsumerMsg::Rerecord(again));
    }
    Ok(())
}

/// A refused command goes to the dead-letter destination (the broker's DLQ
/// topic; nothing more for the embedded log, whose rejection record is
/// already durable) before it is acknowledged.
pub(super) async fn dead_letter_if_rejected(
    state: &ConsumerState,
    id: u64,
    outcome: Outcome,
) -> Outcome {
    let Outcome::Rejected(reason) = outcome else {
        return outcome;
    };
    let Some(f) = state.flow.get(id) else {
        return outcome;
    };
    match state
        .acker
        .dead_letter(&f.delivery, reason.as_str(), "")
        .await
    {
        Ok(()) => Outcome::Rejected(reason),
        Err(e) => Outcome::Retry {
            retryable: true,
            error: format!("dead-lettering failed: {e}"),
        },
    }
}

pub(super) async fn ack(state: &mut ConsumerState, ids: &[u64]) -> Result<(), ActorProcessingErr> {
    if ids.is_empty() {
        return Ok(());
    }
    for id in ids {
        state.flow.remove(*id);
    }
    state.permits.add_permits(ids.len());
    state.acker.ack(ids).await?;
    state.acks_pending = true;
    Ok(())
}

/// Gives up on deliveries: records a `too_many_deliveries` rejection (the
/// embedded dead-letter record) and acknowledges once that is durable.
pub(super) fn give_up(myself: &ActorRef<ConsumerMsg>, state: &mut ConsumerState, ids: Vec<u64>) {
    let mut rejections = Vec::new();
    let mut items = Vec::new();
    for id in ids {
        let Some(f) = state.flow.get_mut(id) else {
            continue;
        };
        f.refused = Some(RejectReason::TooManyDeliveries);
        ev::dead_lettered(RejectReason::TooManyDeliveries, state.partition);
        let command_id = f
            .command
            .as_ref()
            .map(|c| c.interaction_id.clone())
            .unwrap_or_else(|| derived_id(&f.delivery.identity));
        rejections.push((
            Rejection {
                command_id,
                reason: RejectReason::TooManyDeliveries,
                detail: format!(
                    "processing failed {} times",
                    f.failures + f.delivery.redelivery_count
                ),
                rejected_at: published_at(&f.delivery),
            },
            f.delivery.source(),
        ));
        items.push((id, RejectReason::TooManyDeliveries));
    }
    record_rejections(myself, state, rejections, items);
}

pub(super) async fn commit_acks(state: &mut ConsumerState) -> Result<(), ActorProcessingErr> {
    if state.acks_pending {
        state.acker.commit().await?;
        state.acks_pending = false;
    }
    Ok(())
}

pub(super) async fn finish_drain_if_done(
    state: &mut ConsumerState,
) -> Result<(), ActorProcessingErr> {
    if state.draining.is_some() && state.flow.quiescent() {
        commit_acks(state).await?;
        state.acker.flush().await?;
        if let Some(reply) = state.draining.take() {
            let _ = reply.send(());
        }
    }
    Ok(())
}
