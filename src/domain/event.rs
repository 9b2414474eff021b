//! The `InteractionTracked` event: what the journal stores, encoded with
//! rmp-serde using named fields so that adding an optional field never
//! breaks reading older events; or, where a store owns its format (the
//! embedded journal), in the compact encoding ([`InteractionTracked::encode_compact_into`]):
//! fields by position, optional ones only appended.
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
    #[error("cannot decode event: timestamp {0}s {1}ns is out of range")]
    Timestamp(i64, u32),
}

impl InteractionTracked {
    /// The time used for "recorded" semantics, for any schema version.
    pub fn recorded_or_occurred(&self) -> DateTime<Utc> {
        self.recorded_at.unwrap_or(self.occurred_at)
    }

    pub fn encode(&self) -> Result<Vec<u8>, EventCodecError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EventCodecError> {
        let ev: Self = rmp_serde::from_slice(bytes)?;
        if ev.schema_version > EVENT_SCHEMA_VERSION {
            return Err(EventCodecError::FutureVersion(ev.schema_version));
        }
        Ok(ev)
    }

    /// The compact encoding: the same fields by position (a MessagePack
    /// array, no field names) and timestamps as seconds and nanoseconds
    /// (no RFC 3339 text to format and parse). About a third of the named
    /// encoding's bytes, for stores that own their format (the embedded
    /// journal). A later version may only append optional fields: an
    /// older record, shorter, decodes with them absent.
    pub fn encode_compact_into(&self, buf: &mut Vec<u8>) -> Result<(), EventCodecError> {
        self.encode_compact_at(self.seq, buf)
    }

    /// [`Self::encode_compact_into`] of this event numbered `seq` (a store
    /// that numbers a group's events writes them so, without a copy).
    pub fn encode_compact_at(&self, seq: u64, buf: &mut Vec<u8>) -> Result<(), EventCodecError> {
        let c = compact::Ref {
            schema_version: self.schema_version,
            interaction_id: &self.interaction_id,
            user_id: &self.user_id,
            seq,
            interaction_type: self.interaction_type,
            target_id: &self.target.id,
            target_kind: &self.target.kind,
            campaign_id: self.campaign_id.as_deref(),
            occurred_at: compact::time(self.occurred_at),
            affiliate_id: self.affiliate_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            recorded_at: self.recorded_at.map(compact::time),
        };
        Ok(rmp_serde::encode::write(buf, &c)?)
    }

    /// Reads [`Self::encode_compact_into`]'s encoding.
    pub fn decode_compact(bytes: &[u8]) -> Result<Self, EventCodecError> {
        let c: compact::Owned = rmp_serde::from_slice(bytes)?;
        if c.schema_version > EVENT_SCHEMA_VERSION {
            return Err(EventCodecError::FutureVersion(c.schema_version));
        }
        Ok(InteractionTracked {
            schema_version: c.schema_version,
            interaction_id: c.interaction_id,
            user_id: c.user_id,
            seq: c.seq,
            interaction_type: c.interaction_type,
            target: Target {
                id: c.target_id,
                kind: c.target_kind,
            },
            campaign_id: c.campaign_id,
            occurred_at: compact::from_time(c.occurred_at)?,
            affiliate_id: c.affiliate_id,
            correlation_id: c.correlation_id,
            recorded_at: c.recorded_at.map(compact::from_time).transpose()?,
        })
    }
}

/// The compact encoding's shapes: one borrowing the event (nothing is
/// copied to encode), one owning it (decoded). Their fields must stay in
/// the same order.
mod compact {
    use super::{EventCodecError, InteractionType};
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};

    /// Seconds since the epoch and nanoseconds within the second.
    pub type Time = (i64, u32);

    pub fn time(t: DateTime<Utc>) -> Time {
        (t.timestamp(), t.timestamp_subsec_nanos())
    }

    pub fn from_time((secs, nanos): Time) -> Result<DateTime<Utc>, EventCodecError> {
        DateTime::from_timestamp(secs, nanos).ok_or(EventCodecError::Timestamp(secs, nanos))
    }

    #[derive(Serialize)]
    pub struct Ref<'a> {
        pub schema_version: u16,
        pub interaction_id: &'a str,
        pub user_id: &'a str,
        pub seq: u64,
        pub interaction_type: InteractionType,
        pub target_id: &'a str,
        pub target_kind: &'a str,
        pub campaign_id: Option<&'a str>,
        pub occurred_at: Time,
        pub affiliate_id: Option<&'a str>,
        pub correlation_id: Option<&'a str>,
        pub recorded_at: Option<Time>,
    }

    #[derive(Deserialize)]
    pub struct Owned {
        pub schema_version: u16,
        pub interaction_id: String,
        pub user_id: String,
        pub seq: u64,
        pub interaction_type: InteractionType,
        pub target_id: String,
        pub target_kind: String,
        pub campaign_id: Option<String>,
        pub occurred_at: Time,
        #[serde(default)]
        pub affiliate_id: Option<String>,
        #[serde(default)]
        pub correlation_id: Option<String>,
        #[serde(default)]
        pub recorded_at: Option<Time>,
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
    fn the_compact_encoding_round_trips_and_is_smaller() {
        // Given events with and without their optional fields, and a
        // timestamp with nanoseconds
        let mut bare = sample();
        bare.campaign_id = None;
        bare.affiliate_id = None;
        bare.recorded_at = None;
        bare.occurred_at += chrono::Duration::nanoseconds(123_456_789);
        for ev in [sample(), bare] {
            // When encoded compactly, then it decodes to the same event
            let mut buf = Vec::new();
            ev.encode_compact_into(&mut buf).unwrap();
            assert_eq!(InteractionTracked::decode_compact(&buf).unwrap(), ev);
            // and takes less room than the named encoding
            assert!(
                buf.len() * 2 < ev.encode().unwrap().len(),
                "{} bytes",
                buf.len()
            );
        }
    }

    #[test]
    fn a_compact_record_without_the_trailing_optional_fields_decodes() {
        // Given a record written with the v1 fields only (a shorter array)
        let ev = sample();
        let v1 = (
            1u16,
            "i-1",
            "u-1",
            7u64,
            InteractionType::Like,
            "post-9",
            "post",
            Some("c-1"),
            (ev.occurred_at.timestamp(), 0u32),
        );
        let blob = rmp_serde::to_vec(&v1).unwrap();
        // When decoded, then the later fields are absent
        let back = InteractionTracked::decode_compact(&blob).unwrap();
        assert_eq!(back.schema_version, 1);
        assert_eq!(back.occurred_at, ev.occurred_at);
        assert_eq!((back.affiliate_id, back.recorded_at), (None, None));
    }

    #[test]
    fn a_compact_record_from_a_later_version_or_out_of_range_is_refused() {
        let mut ev = sample();
        ev.schema_version = EVENT_SCHEMA_VERSION + 1;
        let mut buf = Vec::new();
        ev.encode_compact_into(&mut buf).unwrap();
        assert!(matches!(
            InteractionTracked::decode_compact(&buf),
            Err(EventCodecError::FutureVersion(_))
        ));
        let far = (
            2u16,
            "i",
            "u",
            1u64,
            InteractionType::Like,
            "t",
            "k",
            None::<&str>,
            (i64::MAX, 0u32),
        );
        assert!(matches!(
            InteractionTracked::decode_compact(&rmp_serde::to_vec(&far).unwrap()),
            Err(EventCodecError::Timestamp(..))
        ));
        assert!(InteractionTracked::decode_compact(&[0xc1]).is_err());
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
