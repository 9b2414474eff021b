//! Answering the original saga step `BuildInteractionsInfo` (Pulsar mode):
//! a task queries the store for the interactions on the target element in
//! the date range (`EventStore::by_target`) and publishes one
//! `InteractionsInfoBuilt` message on the events topic, keyed by saga id
//! (properties `name`, `sagaId`, `correlationId`); it reports back to the
//! consumer, which acknowledges the command only after the broker
//! confirmed the answer. A failure is retryable (store or broker away):
//! the consumer dispatches the command again after a back-off, so the
//! answer is published at least once.

use super::ConsumerMsg;
use crate::domain::codec::BuildInteractionsInfo;
use crate::log::{EventSink, OutboundMessage};
use crate::store::{EventStore, StoredEvent};
use crate::wire;
use ractor::ActorRef;
use std::sync::Arc;
use std::time::Duration;

/// Most interactions listed in one answer (`count` is the number listed).
pub const MAX_ANSWER_ITEMS: usize = 10_000;

/// Starts the task; the outcome comes back as `ConsumerMsg::Answered`.
pub(super) fn answer(
    consumer: ActorRef<ConsumerMsg>,
    store: Arc<dyn EventStore>,
    sink: Arc<dyn EventSink>,
    delivery_id: u64,
    request: BuildInteractionsInfo,
    timeout: Duration,
) {
    tokio::spawn(async move {
        let work = async {
            let events = store
                .by_target(
                    &request.post_id,
                    request.start_date,
                    request.end_date,
                    MAX_ANSWER_ITEMS,
                )
                .await
                .map_err(|e| format!("querying interactions: {e}"))?;
            sink.publish(vec![message(&request, &events)])
                .await
                .map_err(|e| format!("publishing the answer: {e}"))
        };
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err("answering BuildInteractionsInfo timed out".to_string()),
        };
        let _ = consumer.send_message(ConsumerMsg::Answered {
            id: delivery_id,
            result,
        });
    });
}

/// The `InteractionsInfoBuilt` message answering `request`.
pub fn message(request: &BuildInteractionsInfo, events: &[StoredEvent]) -> OutboundMessage {
    let answer = wire::InteractionsInfoBuilt::new(request, events.iter().map(|e| &*e.event));
    OutboundMessage {
        key: request.saga_id.clone(),
        // A struct of strings, dates and numbers always serializes.
        payload: serde_json::to_vec(&answer).unwrap_or_default(),
        properties: wire::built_properties(request),
    }
}
