//! The domain rules: which commands become `InteractionTracked` events.
//!
//! Rules of the original system (kept): the interaction type is one of
//! `click`, `view`, `like`; the target element id and type are non-empty; the
//! campaign id is non-empty for `TrackInteraction` (and the canonical
//! command). Added here: bounded field lengths and no timestamps from the far
//! future, so a buggy producer cannot poison the daily statistics.

use super::{
    CommandFormat, InteractionTracked, InteractionType, TrackInteraction, EVENT_SCHEMA_VERSION,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id (user, interaction, target, campaign, affiliate) accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// How far in the future `occurred_at` may be (producer clock skew).
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;
/// The earliest `occurred_at` accepted: the Unix epoch. Earlier ones are a
/// producer's bug (a zero or negative clock), and a bounded range keeps
/// every day arithmetic of the projections and reads far from overflow.
pub const EARLIEST_OCCURRED_AT: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Why a command was refused. Bounded: these are metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not JSON / MessagePack, or the wrong shape.
    Malformed,
    /// A `name` property or `type` field naming a command we do not know.
    UnknownCommand,
    /// A content type we do not decode.
    UnsupportedEncoding,
    /// Payload larger than the limit.
    Oversize,
    InvalidInteractionType,
    MissingTarget,
    MissingCampaign,
    MissingUser,
    FieldTooLong,
    OccurredInFuture,
    /// The interaction id is already used by another user's event.
    ConflictingInteractionId,
    /// Kept failing while being processed (e.g. its aggregate panicked)
    /// more times than the delivery limit allows.
    TooManyDeliveries,
    /// `occurred_at` before [`EARLIEST_OCCURRED_AT`]. Last: stored
    /// rejections may name a variant by its index.
    OccurredTooLongAgo,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        Self::Malformed,
        Self::UnknownCommand,
        Self::UnsupportedEncoding,
        Self::Oversize,
        Self::InvalidInteractionType,
        Self::MissingTarget,
        Self::MissingCampaign,
        Self::MissingUser,
        Self::FieldTooLong,
        Self::OccurredInFuture,
        Self::OccurredTooLongAgo,
        Self::ConflictingInteractionId,
        Self::TooManyDeliveries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownCommand => "unknown_command",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::Oversize => "oversize",
            Self::InvalidInteractionType => "invalid_interaction_type",
            Self::MissingTarget => "missing_target",
            Self::MissingCampaign => "missing_campaign",
            Self::MissingUser => "missing_user",
            Self::FieldTooLong => "field_too_long",
            Self::OccurredInFuture => "occurred_in_future",
            Self::OccurredTooLongAgo => "occurred_too_long_ago",
            Self::ConflictingInteractionId => "conflicting_interaction_id",
            Self::TooManyDeliveries => "too_many_deliveries",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule violation: the reason (bounded) and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct RuleViolation {
    pub reason: RejectReason,
    pub message: String,
}

fn violation(reason: RejectReason, message: impl Into<String>) -> RuleViolation {
    RuleViolation {
        reason,
        message: message.into(),
    }
}

fn check_len(name: &str, value: &str) -> Result<(), RuleViolation> {
    if value.len() > MAX_ID_LEN {
        return Err(violation(
            RejectReason::FieldTooLong,
            format!(
                "{name} is {} bytes long, the limit is {MAX_ID_LEN}",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Applies the rules to a decoded command. On success returns the event
/// (sequence number 0: the aggregate assigns it) stamped `recorded_at = now`.
pub fn validate(
    cmd: &TrackInteraction,
    now: DateTime<Utc>,
) -> Result<InteractionTracked, RuleViolation> {
    let interaction_type = InteractionType::parse(&cmd.interaction_type).ok_or_else(|| {
        violation(
            RejectReason::InvalidInteractionType,
            "interaction_type must be one of click, view, like",
        )
    })?;
    if cmd.user_id.trim().is_empty() {
        return Err(violation(RejectReason::MissingUser, "user_id is empty"));
    }
    if cmd.target.id.trim().is_empty() || cmd.target.kind.trim().is_empty() {
        return Err(violation(
            RejectReason::MissingTarget,
            "target id and type must be non-empty",
        ));
    }
    let campaign = non_empty(&cmd.campaign_id);
    if campaign.is_none() && cmd.format != CommandFormat::OriginalCreate {
        return Err(violation(
            RejectReason::MissingCampaign,
            "campaign_id must be non-empty",
        ));
    }
    if cmd.interaction_id.trim().is_empty() {
        return Err(violation(
            RejectReason::Malformed,
            "interaction_id is empty",
        ));
    }
    for (name, value) in [
        ("interaction_id", cmd.interaction_id.as_str()),
        ("user_id", cmd.user_id.as_str()),
        ("target.id", cmd.target.id.as_str()),
        ("target.type", cmd.target.kind.as_str()),
        ("campaign_id", cmd.campaign_id.as_deref().unwrap_or("")),
        ("affiliate_id", cmd.affiliate_id.as_deref().unwrap_or("")),
        (
            "correlation_id",
            cmd.correlation_id.as_deref().unwrap_or(""),
        ),
    ] {
        check_len(name, value)?;
    }
    if cmd.occurred_at > now + Duration::hours(MAX_FUTURE_SKEW_HOURS) {
        return Err(violation(
            RejectReason::OccurredInFuture,
            format!("occurred_at is more than {MAX_FUTURE_SKEW_HOURS} h in the future"),
        ));
    }
    if cmd.occurred_at < EARLIEST_OCCURRED_AT {
        return Err(violation(
            RejectReason::OccurredTooLongAgo,
            format!(
                "occurred_at is before {}",
                EARLIEST_OCCURRED_AT.to_rfc3339()
            ),
        ));
    }
    Ok(InteractionTracked {
        schema_version: EVENT_SCHEMA_VERSION,
        interaction_id: cmd.interaction_id.clone(),
        user_id: cmd.user_id.clone(),
        seq: 0,
        interaction_type,
        target: cmd.target.clone(),
        campaign_id: campaign.map(str::to_owned),
        occurred_at: cmd.occurred_at,
        affiliate_id: non_empty(&cmd.affiliate_id).map(str::to_owned),
        correlation_id: non_empty(&cmd.correlation_id).map(str::to_owned),
        recorded_at: Some(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Target;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn cmd() -> TrackInteraction {
        TrackInteraction {
            interaction_id: "i-1".into(),
            user_id: "u-1".into(),
            interaction_type: "click".into(),
            target: Target {
                id: "post-9".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c-1".into()),
            affiliate_id: Some("a-7".into()),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(),
            correlation_id: None,
            format: CommandFormat::Canonical,
        }
    }

    fn reason_of(c: TrackInteraction) -> RejectReason {
        validate(&c, now()).unwrap_err().reason
    }

    #[test]
    fn valid_command_becomes_event() {
        let ev = validate(&cmd(), now()).unwrap();
        assert_eq!(ev.interaction_type, InteractionType::Click);
        assert_eq!(ev.seq, 0);
        assert_eq!(ev.recorded_at, Some(now()));
        assert_eq!(ev.campaign_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn type_is_case_insensitive_but_closed() {
        let mut c = cmd();
        c.interaction_type = " LIKE ".into();
        assert_eq!(
            validate(&c, now()).unwrap().interaction_type,
            InteractionType::Like
        );
        c.interaction_type = "share".into();
        assert_eq!(reason_of(c), RejectReason::InvalidInteractionType);
    }

    #[test]
    fn each_rule_has_its_reason() {
        let mut c = cmd();
        c.target.id = " ".into();
        assert_eq!(reason_of(c), RejectReason::MissingTarget);
        let mut c = cmd();
        c.target.kind = String::new();
        assert_eq!(reason_of(c), RejectReason::MissingTarget);
        let mut c = cmd();
        c.campaign_id = Some("".into());
        assert_eq!(reason_of(c), RejectReason::MissingCampaign);
        let mut c = cmd();
        c.format = CommandFormat::OriginalTrack;
        c.campaign_id = None;
        assert_eq!(reason_of(c), RejectReason::MissingCampaign);
        let mut c = cmd();
        c.user_id = "".into();
        assert_eq!(reason_of(c), RejectReason::MissingUser);
        let mut c = cmd();
        c.affiliate_id = Some("x".repeat(MAX_ID_LEN + 1));
        assert_eq!(reason_of(c), RejectReason::FieldTooLong);
        let mut c = cmd();
        c.occurred_at = now() + Duration::hours(25);
        assert_eq!(reason_of(c), RejectReason::OccurredInFuture);
        let mut c = cmd();
        c.occurred_at = EARLIEST_OCCURRED_AT - Duration::milliseconds(1);
        assert_eq!(reason_of(c), RejectReason::OccurredTooLongAgo);
        let mut c = cmd();
        c.occurred_at = DateTime::<Utc>::MIN_UTC;
        assert_eq!(reason_of(c), RejectReason::OccurredTooLongAgo);
        let mut c = cmd();
        c.occurred_at = EARLIEST_OCCURRED_AT;
        assert!(validate(&c, now()).is_ok());
    }

    #[test]
    fn original_create_needs_no_campaign() {
        let mut c = cmd();
        c.format = CommandFormat::OriginalCreate;
        c.campaign_id = None;
        assert_eq!(validate(&c, now()).unwrap().campaign_id, None);
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }
}
