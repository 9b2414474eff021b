//! The tracking domain: interaction types, the validated command, the
//! `InteractionTracked` event and the rules that decide between them.
//!
//! Everything here is pure (no I/O, no clocks except where a caller passes
//! `now`), so the rules are tested without actors or stores.

pub mod codec;
pub mod decide;
pub mod event;
pub mod position;
#[cfg(test)]
mod props;
pub mod reuse;
pub mod rules;

pub use event::{InteractionTracked, EVENT_SCHEMA_VERSION};
pub use rules::{validate, RejectReason};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of interaction the platform tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionType {
    Click,
    View,
    Like,
}

impl InteractionType {
    pub const ALL: [InteractionType; 3] = [Self::Click, Self::View, Self::Like];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Click => "click",
            Self::View => "view",
            Self::Like => "like",
        }
    }

    /// Parses the wire spelling (case-insensitive, surrounding blanks
    /// ignored). Compares in place: every command is parsed, and a
    /// lower-cased copy would be an allocation per command.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for InteractionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The element a user interacted with (a post, a banner, a link...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A decoded command to track one interaction, before the domain rules ran.
///
/// Decoding (see [`codec`]) only maps a wire format onto this shape; the
/// rules in [`rules`] decide whether it becomes an event. Fields a format
/// does not carry are `None`/empty so the rules can name what is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInteraction {
    /// The idempotency key. Always set after decoding: taken from the
    /// payload, or derived deterministically from the message identity.
    pub interaction_id: String,
    /// The user key (the aggregate this command belongs to).
    pub user_id: String,
    /// The raw interaction type as sent, parsed by the rules.
    pub interaction_type: String,
    pub target: Target,
    pub campaign_id: Option<String>,
    pub affiliate_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    /// Which wire format it came in (for metrics and the status projection).
    pub format: CommandFormat,
}

/// The wire formats the service accepts (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandFormat {
    /// `{"interaction_id":..,"user_id":..,"interaction_type":..,"target":{..},..}`
    Canonical,
    /// The original `TrackInteraction` payload (`target_element_id`, `timestamp`...).
    OriginalTrack,
    /// The original hand test: `{"type":"create_interaction","user_id":123,"interaction":"like",..}`.
    OriginalCreate,
    /// The canonical command encoded with MessagePack.
    MessagePack,
}

impl CommandFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canonical => "canonical",
            Self::OriginalTrack => "track_interaction",
            Self::OriginalCreate => "create_interaction",
            Self::MessagePack => "msgpack",
        }
    }
}

/// A command that could not become an event, kept so the status projection
/// counts it (`error` per day) exactly once and operators can see why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Idempotency key of the rejected command (its interaction id, or one
    /// derived from the message identity when it could not be decoded).
    pub command_id: String,
    pub reason: RejectReason,
    /// Human-readable detail (never the payload itself).
    pub detail: String,
    pub rejected_at: DateTime<Utc>,
}

/// The UTC day of a timestamp: the unit of the daily projections.
pub fn day_of(ts: DateTime<Utc>) -> NaiveDate {
    ts.date_naive()
}
