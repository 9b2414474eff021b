//! Decoding of interaction commands from every accepted wire format.
//!
//! One entry point, [`decode_command`], takes the payload and what the
//! transport knows about the message (key, properties, a stable identity)
//! and returns a [`Command`]. The formats (documented in the README):
//!
//! | selector                                   | format |
//! |--------------------------------------------|--------|
//! | payload starting with [`decided::MAGIC`]     | a command decoded before (the embedded log's records) |
//! | content type `application/msgpack`          | canonical command in MessagePack |
//! | property `name=BuildInteractionsInfo`       | the original saga step |
//! | JSON `"type":"create_interaction"`          | the original hand-test command |
//! | JSON with `target_element_id`               | the original `TrackInteraction` |
//! | JSON with a `target` object                 | the canonical command |
//!
//! Defaults: the user key is the payload's `user_id`, else the message key,
//! else the interaction id (as the original's per-interaction aggregate
//! did). The interaction id is the payload's `interaction_id`, else the
//! `commandId` property, else a UUIDv5 of the message identity, so a
//! redelivered message always gets the same id. `occurred_at` is the
//! payload's `occurred_at`/`timestamp`, else the `eventTime` property (ms),
//! else the publish time.

use super::{CommandFormat, RejectReason, Target, TrackInteraction};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

pub mod decided;

/// Largest payload accepted (the HTTP limit too).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Namespace of the UUIDv5 ids derived from message identities.
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0c2e_9b7d_4e41_8d2a_5f3c_71e0_a9b4);

/// What the transport knows about a message besides its payload.
#[derive(Debug, Clone, Default)]
pub struct MessageMeta<'a> {
    /// The message (partition) key, if any.
    pub key: Option<&'a str>,
    /// Message properties (`name`, `content-type`, `correlationId`, ...).
    pub properties: Option<&'a HashMap<String, String>>,
    /// A stable identity of this message across redeliveries (e.g.
    /// `embedded:2:1042`), used to derive ids when the payload has none.
    pub identity: &'a str,
    /// When the message was published (fallback for `occurred_at`).
    pub published_at: DateTime<Utc>,
}

impl MessageMeta<'_> {
    fn prop(&self, name: &str) -> Option<&str> {
        self.properties
            .and_then(|p| p.get(name))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A decoded command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Track(TrackInteraction),
    BuildInteractionsInfo(BuildInteractionsInfo),
}

/// The original saga step: "give me the interactions on this element in
/// this date range".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInteractionsInfo {
    pub saga_id: String,
    pub post_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub correlation_id: Option<String>,
}

/// Why a payload could not be decoded. Never retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DecodeError {
    pub reason: RejectReason,
    pub message: String,
}

fn err(reason: RejectReason, message: impl Into<String>) -> DecodeError {
    DecodeError {
        reason,
        message: message.into(),
    }
}

/// A user id may be a string or (original hand test) a number.
/// Deserialized with a visitor (not `#[serde(untagged)]`, which buffers
/// every value: this is on the hot path of every command).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum StringOrNumber {
    S(String),
    I(i64),
    U(u64),
    F(f64),
}

impl<'de> Deserialize<'de> for StringOrNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StringOrNumber;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber::S(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber::S(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber::I(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber::U(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber::F(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl StringOrNumber {
    fn into_string(self) -> String {
        match self {
            Self::S(s) => s,
            Self::I(i) => i.to_string(),
            Self::U(u) => u.to_string(),
            Self::F(f) => f.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct WireTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<StringOrNumber>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

/// The union of the fields of every JSON format; which ones are set tells
/// the format apart.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Wire {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    command_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<StringOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interaction_type: Option<String>,
    /// `create_interaction` names the type `interaction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<WireTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_element_id: Option<StringOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_element_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign_id: Option<StringOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    affiliate_id: Option<StringOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    occurred_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireSaga {
    saga_id: String,
    payload: WireSagaPayload,
}

#[derive(Debug, Deserialize)]
struct WireSagaPayload {
    post_id: String,
    start_date: String,
    end_date: String,
}

/// Parses an RFC 3339 timestamp, or a bare `YYYY-MM-DDTHH:MM:SS` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    None
}

/// Parses `YYYY-MM-DD` (a date may also come as a full timestamp: its day
/// is used). Only years 1 to 9999 (four digits): day arithmetic on a date
/// near the calendar's ends would overflow.
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(s).map(|t| t.date_naive()))
        .filter(|d| (1..=9999).contains(&d.year()))
}

/// Derives the idempotency key of a message that carries none.
pub fn derived_id(identity: &str) -> String {
    Uuid::new_v5(&DERIVED_ID_NAMESPACE, identity.as_bytes()).to_string()
}

/// The media type of a content type (before its parameters), to be
/// compared in any letter case (no lowercased copy is made).
pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn is_msgpack(content_type: &str) -> bool {
    let ct = media_type(content_type);
    [
        "application/msgpack",
        "application/x-msgpack",
        "application/vnd.msgpack",
    ]
    .iter()
    .any(|m| ct.eq_ignore_ascii_case(m))
}

fn is_json(content_type: &str) -> bool {
    let ct = media_type(content_type);
    is_json_media_type(ct)
        || ct.eq_ignore_ascii_case("text/json")
        || ct.eq_ignore_ascii_case("text/plain")
}

/// `application/json` or any `+json` media type, in any letter case: what
/// the HTTP endpoint accepts (messages may also say `text/json` or
/// `text/plain`, see `is_json`).
pub fn is_json_media_type(mime: &str) -> bool {
    let suffix = mime.len().checked_sub(5).and_then(|at| mime.get(at..));
    mime.eq_ignore_ascii_case("application/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

/// Decodes one message into a command.
/// The property of a marker record that stands in the command log for a
/// damaged record skipped at the operator's request; its value says where
/// the record was. The marker is refused as malformed, so every skipped
/// record is counted and listed among the rejected commands.
pub const DAMAGED_RECORD_PROPERTY: &str = "tracking-damaged-record";

pub fn decode_command(payload: &[u8], meta: &MessageMeta<'_>) -> Result<Command, DecodeError> {
    decode(payload, meta, false).map(|(command, _)| command)
}

/// [`decode_command`], and, for an interaction command, its JSON with only
/// the fields a format reads, from the same parse: what the HTTP ingest
/// stores, so that unknown fields (of any size) never reach the command
/// log. Decoding that JSON gives the same command.
pub fn decode_command_known_fields(
    payload: &[u8],
    meta: &MessageMeta<'_>,
) -> Result<(Command, Option<Vec<u8>>), DecodeError> {
    decode(payload, meta, true)
}

fn decode(
    payload: &[u8],
    meta: &MessageMeta<'_>,
    known_fields: bool,
) -> Result<(Command, Option<Vec<u8>>), DecodeError> {
    if let Some(place) = meta.prop(DAMAGED_RECORD_PROPERTY) {
        return Err(err(
            RejectReason::Malformed,
            format!("the command log's record ({place}) was damaged on disk and skipped"),
        ));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(err(
            RejectReason::Oversize,
            format!(
                "payload is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    if let Some(encoded) = decided::strip(payload) {
        return decided::decode(encoded).map(|c| (Command::Track(c), None));
    }
    let name = meta.prop("name");
    let content_type = meta
        .prop("content-type")
        .or_else(|| meta.prop("content_type"));
    match name {
        None | Some("TrackInteraction") => {}
        Some("BuildInteractionsInfo") => {
            return decode_saga(payload, meta).map(|s| (Command::BuildInteractionsInfo(s), None))
        }
        Some(other) => {
            return Err(err(
                RejectReason::UnknownCommand,
                format!("unknown command name {other:?}"),
            ));
        }
    }
    let wire: Wire = match content_type {
        Some(ct) if is_msgpack(ct) => rmp_serde::from_slice(payload)
            .map_err(|e| err(RejectReason::Malformed, format!("invalid MessagePack: {e}")))?,
        Some(ct) if !is_json(ct) => {
            return Err(err(
                RejectReason::UnsupportedEncoding,
                format!("unsupported content type {ct:?}"),
            ));
        }
        _ => serde_json::from_slice(payload).map_err(|e| {
            err(
                RejectReason::Malformed,
                format!("invalid JSON command: {e}"),
            )
        })?,
    };
    let format = match (
        content_type.is_some_and(is_msgpack),
        wire.command_type.as_deref(),
    ) {
        (true, _) => CommandFormat::MessagePack,
        (false, Some("create_interaction")) => CommandFormat::OriginalCreate,
        (false, Some(other)) => {
            return Err(err(
                RejectReason::UnknownCommand,
                format!("unknown command type {other:?}"),
            ));
        }
        (false, None) if wire.target.is_some() => CommandFormat::Canonical,
        (false, None) if wire.target_element_id.is_some() || wire.target_element_type.is_some() => {
            CommandFormat::OriginalTrack
        }
        (false, None) if name == Some("TrackInteraction") => CommandFormat::OriginalTrack,
        (false, None) => CommandFormat::Canonical,
    };
    let known = known_fields
        .then(|| serde_json::to_vec(&wire).ok())
        .flatten();
    Ok((Command::Track(build_track(wire, format, meta)?), known))
}

fn build_track(
    wire: Wire,
    format: CommandFormat,
    meta: &MessageMeta<'_>,
) -> Result<TrackInteraction, DecodeError> {
    let interaction_id = wire
        .interaction_id
        .filter(|s| !s.trim().is_empty())
        .or_else(|| meta.prop("commandId").map(str::to_owned))
        .unwrap_or_else(|| derived_id(meta.identity));
    // Without a `user_id` (the original `TrackInteraction` has none) the
    // message key, else the interaction id, is the user. A `user_id` that
    // is given but blank is kept: the rules refuse it as `missing_user`
    // rather than file the command under another user.
    let user_id = match wire.user_id.map(StringOrNumber::into_string) {
        Some(given) => given,
        None => meta
            .key
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| interaction_id.clone()),
    };
    let interaction_type = wire
        .interaction_type
        .or(wire.interaction)
        .unwrap_or_default();
    let target = match (wire.target, format) {
        (Some(t), _) => Target {
            id: t.id.map(StringOrNumber::into_string).unwrap_or_default(),
            kind: t.kind.unwrap_or_default(),
        },
        (None, CommandFormat::OriginalCreate) => Target {
            id: "none".into(),
            kind: "none".into(),
        },
        (None, _) => Target {
            id: wire
                .target_element_id
                .map(StringOrNumber::into_string)
                .unwrap_or_default(),
            kind: wire.target_element_type.unwrap_or_default(),
        },
    };
    let occurred_at = match wire.occurred_at.or(wire.timestamp) {
        Some(s) => parse_timestamp(&s).ok_or_else(|| {
            err(
                RejectReason::Malformed,
                format!("invalid timestamp {s:?} (RFC 3339 expected)"),
            )
        })?,
        None => meta
            .prop("eventTime")
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or(meta.published_at),
    };
    Ok(TrackInteraction {
        interaction_id,
        user_id,
        interaction_type,
        target,
        campaign_id: wire.campaign_id.map(StringOrNumber::into_string),
        affiliate_id: wire.affiliate_id.map(StringOrNumber::into_string),
        occurred_at,
        correlation_id: wire
            .correlation_id
            .or_else(|| meta.prop("correlationId").map(str::to_owned)),
        format,
    })
}

fn decode_saga(
    payload: &[u8],
    meta: &MessageMeta<'_>,
) -> Result<BuildInteractionsInfo, DecodeError> {
    let w: WireSaga = serde_json::from_slice(payload).map_err(|e| {
        err(
            RejectReason::Malformed,
            format!("invalid BuildInteractionsInfo: {e}"),
        )
    })?;
    let day = |s: &str| {
        parse_day(s).ok_or_else(|| {
            err(
                RejectReason::Malformed,
                format!("invalid date {s:?} (YYYY-MM-DD expected)"),
            )
        })
    };
    let (start_date, end_date) = (day(&w.payload.start_date)?, day(&w.payload.end_date)?);
    if end_date < start_date {
        return Err(err(
            RejectReason::Malformed,
            "end_date is before start_date",
        ));
    }
    Ok(BuildInteractionsInfo {
        saga_id: w.saga_id,
        post_id: w.payload.post_id,
        start_date,
        end_date,
        correlation_id: meta.prop("correlationId").map(str::to_owned),
    })
}

/// The canonical command as the HTTP API and the load generator send it;
/// also the MessagePack shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    pub user_id: String,
    pub interaction_type: String,
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests;
