//! `EventPublisher`: publishes every `InteractionTracked` event of the
//! journal to the events topic (Pulsar mode), for other services.
//!
//! Modeled on the projector: the writer's committed records reach it
//! through the writer's subscribers ([`super::subscribers`]); it publishes them in journal
//! position order (keyed by user id, property `name=InteractionTracked`
//! and `schema_version`, the HTTP item as JSON) and, once the broker
//! confirmed them, moves the store cursor `events-out` to the last
//! position published. On start, on a gap in positions (records it never
//! received, e.g. while it restarted) and on every tick it catches up from
//! the journal (`EventStore::scan` after the cursor).
//!
//! Guarantee: at least once, in journal order (so in `seq` order per
//! user). A crash (or a failed publish) between the broker's receipt and
//! the cursor move publishes those events again: consumers dedupe by
//! `interaction_id`. Nothing is skipped: the cursor only moves past
//! records the broker confirmed.
//!
//! Only for stores with store-wide positions ([`ProjectionMode::Checkpointed`],
//! the embedded store); a store that folds its projections behind the
//! journal publishes from its followers (`actors::folder`).

use super::follow::{catch_up, handle_in_order, Follower};
use super::schedule_flush;
use super::subscribers::{subscriber_msg, Subscribers};
use crate::internal_events as ev;
use crate::log::{EventSink, OutboundMessage};
use crate::store::{EventStore, JournalRecord, StoreError};
use crate::wire;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;

/// The store cursor of the events stream.
pub const CURSOR: &str = "events-out";
/// Records read from the journal per catch-up step.
const CATCH_UP_CHUNK: usize = 1024;
/// How often the publisher checks it is not behind the journal.
const TICK: Duration = Duration::from_secs(1);

/// Errors of one publishing step (both retryable: the tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] crate::log::LogError),
}

pub enum PublisherMsg {
    /// Records just committed, in position order.
    Committed(Arc<Vec<JournalRecord>>),
    /// Publish what was buffered (sent to itself).
    Flush,
    /// Periodic catch-up from the journal.
    Tick,
}

pub struct EventPublisher;

pub struct PublisherArgs {
    pub store: Arc<dyn EventStore>,
    pub sink: Arc<dyn EventSink>,
    /// The writer's subscribers: the publisher adds itself at start.
    pub subscribers: Subscribers,
}

/// The publisher's key among the writer's subscribers.
pub const SUBSCRIBER_KEY: &str = "event-publisher";

subscriber_msg!(PublisherMsg::Committed);

pub struct PublisherState {
    store: Arc<dyn EventStore>,
    sink: Arc<dyn EventSink>,
    cursor: u64,
    buffer: Vec<Arc<Vec<JournalRecord>>>,
    flush_scheduled: bool,
}

impl Actor for EventPublisher {
    type Msg = PublisherMsg;
    type State = PublisherState;
    type Arguments = PublisherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PublisherArgs,
    ) -> Result<PublisherState, ActorProcessingErr> {
        let cursor = args.store.cursor(CURSOR).await?;
        let mut state = PublisherState {
            store: args.store,
            sink: args.sink,
            cursor,
            buffer: Vec::new(),
            flush_scheduled: false,
        };
        // Not fatal: the broker may be away; the tick catches up.
        if let Err(e) = catch_up(&mut state, u64::MAX).await {
            tracing::warn!(error = %e, "events topic: catching up failed; retrying on the tick");
        }
        args.subscribers
            .subscribe(SUBSCRIBER_KEY, myself.get_derived());
        myself.send_interval(TICK, || PublisherMsg::Tick);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: PublisherMsg,
        state: &mut PublisherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PublisherMsg::Committed(records) => {
                state.buffer.push(records);
                if !schedule_flush(&myself, &mut state.flush_scheduled, PublisherMsg::Flush) {
                    flush(state).await;
                }
            }
            PublisherMsg::Flush => {
                state.flush_scheduled = false;
                flush(state).await;
            }
            PublisherMsg::Tick => {
                if let Err(e) = catch_up(state, u64::MAX).await {
                    tracing::debug!(error = %e, "events topic: catch-up failed");
                }
            }
        }
        Ok(())
    }
}

/// Publishes what is buffered; on failure the journal still has the
/// events for the tick.
async fn flush(state: &mut PublisherState) {
    let buffered = std::mem::take(&mut state.buffer);
    if let Err(e) = publish_buffered(state, &buffered).await {
        tracing::warn!(error = %e, "events topic: publish failed; retrying from the journal");
    }
}

async fn publish_buffered(
    state: &mut PublisherState,
    buffered: &[Arc<Vec<JournalRecord>>],
) -> Result<(), PublishError> {
    handle_in_order(state, buffered).await.map(|_| ())
}

/// The outbound message of one journal record (events only).
pub fn outbound(record: &JournalRecord) -> Option<OutboundMessage> {
    let JournalRecord::Event(e) = record else {
        return None;
    };
    let payload = serde_json::to_vec(&wire::Interaction::from(&*e.event)).ok()?;
    let properties = wire::tracked_properties(&e.event);
    Some(OutboundMessage {
        key: e.event.user_id.clone(),
        payload,
        properties,
    })
}

impl Follower for PublisherState {
    type Error = PublishError;
    const CHUNK: usize = CATCH_UP_CHUNK;

    fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    fn position(&self) -> u64 {
        self.cursor
    }

    /// Publishes records (ascending positions after the cursor), then moves
    /// the cursor.
    async fn handle(&mut self, records: &[JournalRecord]) -> Result<(), PublishError> {
        let Some(last) = records.last().map(JournalRecord::pos) else {
            return Ok(());
        };
        let messages: Vec<OutboundMessage> = records.iter().filter_map(outbound).collect();
        let n = messages.len() as u64;
        self.sink.publish(messages).await?;
        ev::events_published(n);
        self.store.set_cursor(CURSOR, last).await?;
        self.cursor = last;
        Ok(())
    }
}
