//! Fuzz target: `decode_command` (every accepted wire format) and, when a
//! track command decodes, the domain rules and the event codec after it.
//!
//! Input layout (so that seeds stay readable; see `fuzz/README.md`):
//! - byte 0: bits 0-2 content type (none, json, msgpack, x-msgpack with
//!   parameters, text/plain, +json, xml, garbage), bits 3-4 `name` (none,
//!   TrackInteraction, BuildInteractionsInfo, Other), bit 5 key, bit 6
//!   `commandId`, bit 7 `eventTime`;
//! - byte 1: bit 0 `correlationId`, bit 1 spell it `content_type`, bit 2
//!   an identity;
//! - then, for each field present (key, commandId, eventTime,
//!   correlationId, identity): one length byte and that many bytes;
//! - the rest is the payload.
#![no_main]

use alpes_tracking::domain::codec::{decode_command, Command, MessageMeta, MAX_PAYLOAD_BYTES};
use alpes_tracking::domain::{validate, CommandFormat, InteractionTracked, RejectReason};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/json"),
    Some("application/msgpack"),
    Some("Application/X-MsgPack; charset=binary"),
    Some("text/plain"),
    Some("application/vnd.alpes+json"),
    Some("application/xml"),
    Some("\u{0};;"),
];
const NAMES: [Option<&str>; 4] = [
    None,
    Some("TrackInteraction"),
    Some("BuildInteractionsInfo"),
    Some("Other"),
];

fn take<'a>(data: &mut &'a [u8]) -> String {
    let Some((&len, rest)) = data.split_first() else {
        return String::new();
    };
    let len = usize::from(len).min(rest.len());
    let (s, rest) = rest.split_at(len);
    *data = rest;
    String::from_utf8_lossy(s).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else {
        return;
    };
    let mut rest = &data[2..];
    let key = (b0 & 0x20 != 0).then(|| take(&mut rest));
    let mut props = HashMap::new();
    if let Some(ct) = CONTENT_TYPES[usize::from(b0 & 7)] {
        let name = if b1 & 2 != 0 {
            "content_type"
        } else {
            "content-type"
        };
        props.insert(name.to_string(), ct.to_string());
    }
    if let Some(n) = NAMES[usize::from((b0 >> 3) & 3)] {
        props.insert("name".to_string(), n.to_string());
    }
    for (bit, prop) in [(b0 & 0x40, "commandId"), (b0 & 0x80, "eventTime")] {
        if bit != 0 {
            let v = take(&mut rest);
            props.insert(prop.to_string(), v);
        }
    }
    if b1 & 1 != 0 {
        let v = take(&mut rest);
        props.insert("correlationId".to_string(), v);
    }
    let identity = if b1 & 4 != 0 {
        take(&mut rest)
    } else {
        "fuzz:0:1".to_string()
    };
    let payload = rest;
    let published_at = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap();
    let meta = MessageMeta {
        key: key.as_deref(),
        properties: Some(&props),
        identity: &identity,
        published_at,
    };
    let decoded = decode_command(payload, &meta);
    // Decoding is a pure function of the message (ids derived from the
    // identity are stable across redeliveries).
    assert_eq!(decoded, decode_command(payload, &meta));
    if payload.len() > MAX_PAYLOAD_BYTES {
        let e = decoded.expect_err("an oversize payload was accepted");
        assert_eq!(e.reason, RejectReason::Oversize);
        return;
    }
    match decoded {
        Err(_) => {}
        Ok(Command::BuildInteractionsInfo(b)) => {
            assert!(b.start_date <= b.end_date, "{b:?}");
        }
        Ok(Command::Track(t)) => {
            assert!(!t.interaction_id.is_empty(), "{t:?}");
            assert!(!t.user_id.is_empty(), "{t:?}");
            let msgpack = t.format == CommandFormat::MessagePack;
            let ct = props
                .get("content-type")
                .or_else(|| props.get("content_type"))
                .map(|c| c.to_ascii_lowercase());
            assert_eq!(msgpack, ct.is_some_and(|c| c.contains("msgpack")), "{t:?}");
            let now = Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap();
            if let Ok(ev) = validate(&t, now) {
                assert_eq!(ev.interaction_id, t.interaction_id);
                let bytes = ev.encode().expect("a valid event encodes");
                let back = InteractionTracked::decode(&bytes).expect("an encoded event decodes");
                assert_eq!(back, ev);
            }
        }
    }
});
