//! The service's own encoding of a decoded interaction command, for a
//! command log that only this service reads (the embedded log).
//!
//! The HTTP ingest decodes every command to validate it; appending that
//! decoded command, rather than its JSON, spares the consumer a second
//! parse of every command (a JSON parse was about a third of a consumer's
//! CPU per event). The record keeps everything decoding gave: the
//! interaction id (so a command without one keeps the id the client was
//! told), the arrival time of a command without a time, and the wire
//! format, which decides the rules. [`MAGIC`], then MessagePack, fields
//! by position, the time as seconds and nanoseconds. The record needs no
//! message property (a properties map costs the log's reader and the
//! decoder per record): no JSON text and no MessagePack value starts with
//! the magic's first byte. A log shared with other services (Pulsar)
//! keeps the JSON.

use super::{err, DecodeError};
use crate::domain::{CommandFormat, RejectReason, Target, TrackInteraction};
use chrono::DateTime;
use serde::{Deserialize, Serialize};

/// The first bytes of a decided command: `0xC1`, which MessagePack never
/// uses and which is not UTF-8 (so no JSON starts with it), and the
/// encoding's version.
pub const MAGIC: [u8; 2] = [0xC1, 0x01];

/// The encoded command of a payload holding a decided one.
pub fn strip(payload: &[u8]) -> Option<&[u8]> {
    payload.strip_prefix(&MAGIC)
}

#[derive(Serialize)]
struct Out<'a> {
    interaction_id: &'a str,
    user_id: &'a str,
    interaction_type: &'a str,
    target_id: &'a str,
    target_kind: &'a str,
    campaign_id: Option<&'a str>,
    affiliate_id: Option<&'a str>,
    occurred_secs: i64,
    occurred_nanos: u32,
    correlation_id: Option<&'a str>,
    format: u8,
}

#[derive(Deserialize)]
struct In {
    interaction_id: String,
    user_id: String,
    interaction_type: String,
    target_id: String,
    target_kind: String,
    campaign_id: Option<String>,
    affiliate_id: Option<String>,
    occurred_secs: i64,
    occurred_nanos: u32,
    correlation_id: Option<String>,
    format: u8,
}

fn format_code(f: CommandFormat) -> u8 {
    match f {
        CommandFormat::Canonical => 0,
        CommandFormat::OriginalTrack => 1,
        CommandFormat::OriginalCreate => 2,
        CommandFormat::MessagePack => 3,
    }
}

fn format_of(code: u8) -> Option<CommandFormat> {
    Some(match code {
        0 => CommandFormat::Canonical,
        1 => CommandFormat::OriginalTrack,
        2 => CommandFormat::OriginalCreate,
        3 => CommandFormat::MessagePack,
        _ => return None,
    })
}

/// Encodes a decoded command as a record payload ([`MAGIC`] first).
pub fn encode(cmd: &TrackInteraction) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    rmp_serde::encode::write(
        &mut out,
        &Out {
            interaction_id: &cmd.interaction_id,
            user_id: &cmd.user_id,
            interaction_type: &cmd.interaction_type,
            target_id: &cmd.target.id,
            target_kind: &cmd.target.kind,
            campaign_id: cmd.campaign_id.as_deref(),
            affiliate_id: cmd.affiliate_id.as_deref(),
            occurred_secs: cmd.occurred_at.timestamp(),
            occurred_nanos: cmd.occurred_at.timestamp_subsec_nanos(),
            correlation_id: cmd.correlation_id.as_deref(),
            format: format_code(cmd.format),
        },
    )?;
    Ok(out)
}

/// Decodes what follows the [`MAGIC`] of a payload ([`strip`]); the
/// command is exactly the one encoded.
pub fn decode(encoded: &[u8]) -> Result<TrackInteraction, DecodeError> {
    let r: In = rmp_serde::from_slice(encoded).map_err(|e| {
        err(
            RejectReason::Malformed,
            format!("invalid decided command: {e}"),
        )
    })?;
    let occurred_at = DateTime::from_timestamp(r.occurred_secs, r.occurred_nanos)
        .ok_or_else(|| err(RejectReason::Malformed, "decided command: invalid time"))?;
    let format = format_of(r.format).ok_or_else(|| {
        err(
            RejectReason::Malformed,
            format!("decided command: unknown format {}", r.format),
        )
    })?;
    Ok(TrackInteraction {
        interaction_id: r.interaction_id,
        user_id: r.user_id,
        interaction_type: r.interaction_type,
        target: Target {
            id: r.target_id,
            kind: r.target_kind,
        },
        campaign_id: r.campaign_id,
        affiliate_id: r.affiliate_id,
        occurred_at,
        correlation_id: r.correlation_id,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::codec::{decode_command, Command, MessageMeta};
    use chrono::{TimeZone, Utc};
    use std::collections::HashMap;

    fn command(format: CommandFormat) -> TrackInteraction {
        TrackInteraction {
            interaction_id: "i-1".into(),
            user_id: "ü-1".into(),
            interaction_type: "Click".into(),
            target: Target {
                id: "post-9".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c".into()),
            affiliate_id: None,
            occurred_at: Utc.timestamp_opt(1_764_000_000, 123_456_789).unwrap(),
            correlation_id: Some("corr".into()),
            format,
        }
    }

    fn meta(properties: &HashMap<String, String>) -> MessageMeta<'_> {
        MessageMeta {
            key: Some("another-key"),
            properties: Some(properties),
            identity: "embedded:1:1",
            published_at: Utc.timestamp_opt(1, 0).unwrap(),
        }
    }

    #[test]
    fn a_decided_command_decodes_to_itself_in_every_format() {
        let props = HashMap::new();
        for format in [
            CommandFormat::Canonical,
            CommandFormat::OriginalTrack,
            CommandFormat::OriginalCreate,
            CommandFormat::MessagePack,
        ] {
            let given = command(format);
            let payload = encode(&given).unwrap();
            // Through the one entry point, whatever the key, identity and
            // publish time say: the record holds the decided values.
            let got = decode_command(&payload, &meta(&props)).unwrap();
            assert_eq!(got, Command::Track(given));
        }
    }

    #[test]
    fn empty_and_absent_fields_survive() {
        let mut given = command(CommandFormat::Canonical);
        given.user_id = String::new();
        given.campaign_id = None;
        given.correlation_id = None;
        given.target.kind = String::new();
        let payload = encode(&given).unwrap();
        assert_eq!(decode(strip(&payload).unwrap()).unwrap(), given);
    }

    #[test]
    fn a_damaged_record_is_refused_as_malformed() {
        let payload = encode(&command(CommandFormat::Canonical)).unwrap();
        let props = HashMap::new();
        let half = &payload[..payload.len() / 2];
        for bad in [half, b"\xC1\x01{\"user_id\":\"u\"}".as_slice(), &MAGIC] {
            let e = decode_command(bad, &meta(&props)).unwrap_err();
            assert_eq!(e.reason, RejectReason::Malformed, "{e}");
        }
        let mut unknown = payload.clone();
        // The format is the last field, a positive fixint.
        *unknown.last_mut().unwrap() = 9;
        let e = decode_command(&unknown, &meta(&props)).unwrap_err();
        assert!(e.message.contains("format 9"), "{e}");
    }

    #[test]
    fn no_json_or_message_pack_payload_is_taken_for_one() {
        let canonical = br#"{"user_id":"u","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c"}"#;
        assert!(strip(canonical).is_none());
        assert!(strip(b" {}").is_none());
        let map = rmp_serde::to_vec_named(&command(CommandFormat::Canonical)).unwrap();
        assert!(strip(&map).is_none());
        // The version is part of the magic: another is not this encoding.
        assert!(strip(&[0xC1, 0x02, 0x90]).is_none());
    }
}
