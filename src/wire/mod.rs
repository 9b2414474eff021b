//! The payloads that leave the process, as typed views: the JSON of one
//! interaction (an item of the HTTP API and the `InteractionTracked`
//! message on the events topic), the `InteractionsInfoBuilt` answer to the
//! original saga step, and the message properties other services filter
//! on.
//!
//! These are public contracts. Each view is a `Serialize` struct borrowing
//! the domain types, pinned by a golden file (`src/wire/golden/`): renaming,
//! retyping or dropping a field fails a test before it reaches a consumer.
//! Fields are declared in alphabetical order, the order the service has
//! always emitted them (a `serde_json` map sorts its keys), so a view gives
//! the same bytes whether it is serialized directly (the events topic) or
//! through a `serde_json::Value` (the HTTP API).
//!
//! Ground layer: imports only the domain.

use crate::domain::codec::BuildInteractionsInfo;
use crate::domain::event::InteractionTracked;
use crate::domain::InteractionType;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// Message property: what the message is (`InteractionTracked`,
/// `InteractionsInfoBuilt`).
pub const PROP_NAME: &str = "name";
/// Message property of `InteractionTracked`: the event's schema version.
pub const PROP_SCHEMA_VERSION: &str = "schema_version";
/// Message property of `InteractionTracked`: `occurred_at` in Unix ms.
pub const PROP_EVENT_TIME: &str = "eventTime";
/// Message property: the caller's correlation id, when it gave one.
pub const PROP_CORRELATION_ID: &str = "correlationId";
/// Message property of `InteractionsInfoBuilt`: the saga it answers.
pub const PROP_SAGA_ID: &str = "sagaId";

/// The name of the event on the events topic.
pub const INTERACTION_TRACKED: &str = "InteractionTracked";
/// The name of the saga step's answer.
pub const INTERACTIONS_INFO_BUILT: &str = "InteractionsInfoBuilt";

/// One interaction as other services see it.
#[derive(Debug, Serialize)]
pub struct Interaction<'a> {
    pub affiliate_id: &'a Option<String>,
    pub campaign_id: &'a Option<String>,
    pub correlation_id: &'a Option<String>,
    pub interaction_id: &'a str,
    pub interaction_type: InteractionType,
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded (`occurred_at` for events older than the field).
    pub recorded_at: DateTime<Utc>,
    pub schema_version: u16,
    pub seq: u64,
    pub target: Target<'a>,
    pub user_id: &'a str,
}

/// The element interacted with.
#[derive(Debug, Serialize)]
pub struct Target<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

impl<'a> From<&'a InteractionTracked> for Interaction<'a> {
    fn from(ev: &'a InteractionTracked) -> Self {
        Self {
            affiliate_id: &ev.affiliate_id,
            campaign_id: &ev.campaign_id,
            correlation_id: &ev.correlation_id,
            interaction_id: &ev.interaction_id,
            interaction_type: ev.interaction_type,
            occurred_at: ev.occurred_at,
            recorded_at: ev.recorded_or_occurred(),
            schema_version: ev.schema_version,
            seq: ev.seq,
            target: Target {
                id: &ev.target.id,
                kind: &ev.target.kind,
            },
            user_id: &ev.user_id,
        }
    }
}

/// The properties of an `InteractionTracked` message.
pub fn tracked_properties(ev: &InteractionTracked) -> HashMap<String, String> {
    let mut p = HashMap::new();
    p.insert(PROP_NAME.into(), INTERACTION_TRACKED.into());
    p.insert(PROP_SCHEMA_VERSION.into(), ev.schema_version.to_string());
    p.insert(
        PROP_EVENT_TIME.into(),
        ev.occurred_at.timestamp_millis().to_string(),
    );
    if let Some(c) = &ev.correlation_id {
        p.insert(PROP_CORRELATION_ID.into(), c.clone());
    }
    p
}

/// The answer to `BuildInteractionsInfo`: the interactions on an element
/// in a date range (`count` is the number listed).
#[derive(Debug, Serialize)]
pub struct InteractionsInfoBuilt<'a> {
    pub count: usize,
    pub end_date: NaiveDate,
    pub interactions: Vec<Interaction<'a>>,
    pub name: &'static str,
    pub post_id: &'a str,
    pub saga_id: &'a str,
    pub start_date: NaiveDate,
}

impl<'a> InteractionsInfoBuilt<'a> {
    pub fn new(
        request: &'a BuildInteractionsInfo,
        events: impl IntoIterator<Item = &'a InteractionTracked>,
    ) -> Self {
        let interactions: Vec<_> = events.into_iter().map(Interaction::from).collect();
        Self {
            count: interactions.len(),
            end_date: request.end_date,
            interactions,
            name: INTERACTIONS_INFO_BUILT,
            post_id: &request.post_id,
            saga_id: &request.saga_id,
            start_date: request.start_date,
        }
    }
}

/// The properties of an `InteractionsInfoBuilt` message.
pub fn built_properties(request: &BuildInteractionsInfo) -> HashMap<String, String> {
    let mut p = HashMap::new();
    p.insert(PROP_NAME.into(), INTERACTIONS_INFO_BUILT.into());
    p.insert(PROP_SAGA_ID.into(), request.saga_id.clone());
    if let Some(c) = &request.correlation_id {
        p.insert(PROP_CORRELATION_ID.into(), c.clone());
    }
    p
}

#[cfg(test)]
mod tests;
