//! The `InteractionTracked` event: what the journal stores, encoded with
//! rmp-serde using named fields so that adding an optional field never
//! breaks reading older events.
//!
//! Versions:
//! - v1: interaction id, type, target element id and type, campaign id,
//!   timestamp (the original system's event), plus user id and sequence.
//! - v2: adds `affiliate_id`, `correlation_id` and `recorded_at` (optional,
//!   so v1 blobs decode with them absent).

use super::{InteractionType, Target};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The schema version this code writes.
pub const EVENT_SCHEMA_VERSION: u16 = 2;

/// One tracked interaction, immutable once in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionTracked {
    /// Schema version of this event (see the module docs).
    pub schema_version: u16,
    pub interaction_id: String,
    pub user_id: String,
    /// The user's sequence number: 1, 2, 3... with no gaps.
    pub seq: u64,
    pub interaction_type: InteractionType,
    pub target: Target,
    #[serde(default)]
    pub campaign_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    // ---- v2 ----
    #[serde(default)]
    pub affiliate_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// When the event was recorded. v1 events lack it; readers fall back to
    /// `occurred_at`.
    #[serde(default)]
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Errors of the event codec. Never retryable: a blob that does not decode
/// today will not decode tomorrow.
#[derive(Debug, thiserror::Error)]
pub enum EventCodecError {
    #[error("cannot encode event: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode event: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("event schema version {0} is newer than this code ({EVENT_SCHEMA_VERSION})")]
    FutureVersion(u16),
}

impl InteractionTracked {
    /// The time used for "recorded" semantics, for any schema version.
    pub fn recorded_or_occurred(&self) -> DateTime<Utc> {
        self.recorded_at.unwrap_or(self.occurred_at)
    }

    pub fn encode(&self) -> Result<Vec<u8>, EventCodecError> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf)?;
        Ok(buf)
    }

    /// [`Self::encode`], appended to `buf` (no copy when a prefix comes first).
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Result<(), EventCodecError> {
        Ok(rmp_serde::encode::write_named(buf, self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EventCodecError> {
        let ev: Self = rmp_serde::from_slice(bytes)?;
        if ev.schema_version > EVENT_SCHEMA_VERSION {
            return Err(EventCodecError::FutureVersion(ev.schema_version));
        }
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The v1 shape, as the first release wrote it.
    #[derive(Serialize)]
    struct V1 {
        schema_version: u16,
        interaction_id: String,
        user_id: String,
        seq: u64,
        interaction_type: InteractionType,
        target: Target,
        campaign_id: Option<String>,
        occurred_at: DateTime<Utc>,
    }

    fn sample() -> InteractionTracked {
        InteractionTracked {
            schema_version: EVENT_SCHEMA_VERSION,
            interaction_id: "i-1".into(),
            user_id: "u-1".into(),
            seq: 7,
            interaction_type: InteractionType::Like,
            target: Target {
                id: "post-9".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c-1".into()),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(),
            affiliate_id: Some("a-7".into()),
            correlation_id: None,
            recorded_at: Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 1).unwrap()),
        }
    }

    #[test]
    fn round_trips() {
        let ev = sample();
        let back = InteractionTracked::decode(&ev.encode().unwrap()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn v1_blob_decodes_with_v2_code() {
        let v1 = V1 {
            schema_version: 1,
            interaction_id: "old".into(),
            user_id: "u-9".into(),
            seq: 1,
            interaction_type: InteractionType::Click,
            target: Target {
                id: "post-42".into(),
                kind: "post".into(),
            },
            campaign_id: Some("camp-7".into()),
            occurred_at: Utc.with_ymd_and_hms(2025, 9, 10, 12, 0, 0).unwrap(),
        };
        let blob = rmp_serde::to_vec_named(&v1).unwrap();
        let ev = InteractionTracked::decode(&blob).unwrap();
        assert_eq!(ev.schema_version, 1);
        assert_eq!(ev.interaction_id, "old");
        assert_eq!(ev.affiliate_id, None);
        assert_eq!(ev.recorded_at, None);
        assert_eq!(ev.recorded_or_occurred(), v1.occurred_at);
    }

    #[test]
    fn future_version_is_refused() {
        let mut ev = sample();
        ev.schema_version = EVENT_SCHEMA_VERSION + 1;
        let blob = rmp_serde::to_vec_named(&ev).unwrap();
        assert!(matches!(
            InteractionTracked::decode(&blob),
            Err(EventCodecError::FutureVersion(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(InteractionTracked::decode(&[0xc1, 0xff, 0x00]).is_err());
        assert!(InteractionTracked::decode(&[]).is_err());
    }
}
