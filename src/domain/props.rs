//! Property tests of the domain codecs: the event codec round trip, the
//! command decoder on every wire format it accepts (encode an arbitrary
//! valid command, decode, get the same `TrackInteraction`), and the decoder
//! never panicking on arbitrary payloads and message properties.

use super::codec::{
    decode_command, derived_id, CanonicalCommand, Command, MessageMeta, MAX_PAYLOAD_BYTES,
};
use super::{CommandFormat, InteractionTracked, InteractionType, RejectReason, Target};
use super::{TrackInteraction, EVENT_SCHEMA_VERSION};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::HashMap;

const IDENTITY: &str = "embedded:3:1042";

/// Any string: ASCII ids, printable unicode, or anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{0,12}", "\\PC{0,24}", any::<String>(),]
}

/// A string with at least one character that is not blank.
fn non_blank() -> impl Strategy<Value = String> {
    "\\PC{0,10}[a-zA-Z0-9éß日本🦀]\\PC{0,10}"
}

/// An instant between 1900 and 2100, to the nanosecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-2_208_988_800i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, n)| {
        Utc.timestamp_opt(s, n)
            .single()
            .expect("in range, below a second")
    })
}

fn interaction_type() -> impl Strategy<Value = InteractionType> {
    prop::sample::select(InteractionType::ALL.to_vec())
}

fn event() -> impl Strategy<Value = InteractionTracked> {
    let ids = (0..=EVENT_SCHEMA_VERSION, text(), text(), any::<u64>());
    let what = (interaction_type(), text(), text(), prop::option::of(text()));
    let when = (instant(), prop::option::of(instant()));
    let v2 = (prop::option::of(text()), prop::option::of(text()));
    (ids, what, when, v2).prop_map(
        |(
            (schema_version, interaction_id, user_id, seq),
            (ty, tid, kind, campaign),
            (at, rec),
            (aff, corr),
        )| {
            InteractionTracked {
                schema_version,
                interaction_id,
                user_id,
                seq,
                interaction_type: ty,
                target: Target { id: tid, kind },
                campaign_id: campaign,
                occurred_at: at,
                affiliate_id: aff,
                correlation_id: corr,
                recorded_at: rec,
            }
        },
    )
}

/// A valid type as a client may spell it.
fn type_spelling() -> impl Strategy<Value = String> {
    (interaction_type(), any::<bool>()).prop_map(|(t, upper)| {
        if upper {
            t.as_str().to_ascii_uppercase()
        } else {
            t.as_str().to_owned()
        }
    })
}

fn canonical() -> impl Strategy<Value = CanonicalCommand> {
    let who = (prop::option::of(non_blank()), non_blank(), type_spelling());
    let what = (
        text(),
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
    );
    (who, what, instant()).prop_map(
        |(
            (interaction_id, user_id, interaction_type),
            (id, kind, campaign_id, affiliate_id),
            occurred_at,
        )| {
            CanonicalCommand {
                interaction_id,
                user_id,
                interaction_type,
                target: Target { id, kind },
                campaign_id,
                affiliate_id,
                occurred_at,
            }
        },
    )
}

fn meta<'a>(key: Option<&'a str>, props: &'a HashMap<String, String>) -> MessageMeta<'a> {
    MessageMeta {
        key,
        properties: Some(props),
        identity: IDENTITY,
        published_at: Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    }
}

fn track(payload: &[u8], m: &MessageMeta<'_>) -> Result<TrackInteraction, String> {
    match decode_command(payload, m) {
        Ok(Command::Track(t)) => Ok(t),
        other => Err(format!("expected a track command, got {other:?}")),
    }
}

fn expected_canonical(c: &CanonicalCommand, format: CommandFormat) -> TrackInteraction {
    TrackInteraction {
        interaction_id: c
            .interaction_id
            .clone()
            .unwrap_or_else(|| derived_id(IDENTITY)),
        user_id: c.user_id.clone(),
        interaction_type: c.interaction_type.clone(),
        target: c.target.clone(),
        campaign_id: c.campaign_id.clone(),
        affiliate_id: c.affiliate_id.clone(),
        occurred_at: c.occurred_at,
        correlation_id: None,
        format,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_round_trip(ev in event()) {
        let bytes = ev.encode().expect("encodes");
        prop_assert_eq!(InteractionTracked::decode(&bytes).expect("decodes"), ev);
    }

    #[test]
    fn canonical_json_round_trips(c in canonical(), json_ct in any::<bool>()) {
        let mut props = HashMap::new();
        if json_ct {
            props.insert("content-type".to_string(), "application/json".to_string());
        }
        let payload = serde_json::to_vec(&c).expect("encodes");
        let t = track(&payload, &meta(None, &props)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(t, expected_canonical(&c, CommandFormat::Canonical));
    }

    #[test]
    fn canonical_msgpack_round_trips(c in canonical(), key in prop::option::of(non_blank())) {
        let mut props = HashMap::new();
        props.insert("content-type".to_string(), "application/msgpack".to_string());
        let payload = rmp_serde::to_vec_named(&c).expect("encodes");
        let t = track(&payload, &meta(key.as_deref(), &props)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(t, expected_canonical(&c, CommandFormat::MessagePack));
    }

    #[test]
    fn original_track_interaction_round_trips(
        user in non_blank(),
        ty in type_spelling(),
        (tid, kind) in (text(), text()),
        campaign in prop::option::of(text()),
        at in instant(),
        command_id in prop::option::of(non_blank()),
        correlation in prop::option::of(non_blank()),
        named in any::<bool>(),
    ) {
        let mut body = serde_json::json!({
            "interaction_type": ty,
            "target_element_id": tid,
            "target_element_type": kind,
            "timestamp": rfc3339(at),
        });
        if let Some(c) = &campaign {
            body["campaign_id"] = serde_json::Value::String(c.clone());
        }
        let mut props = HashMap::new();
        if named {
            props.insert("name".to_string(), "TrackInteraction".to_string());
        }
        if let Some(id) = &command_id {
            props.insert("commandId".to_string(), id.clone());
        }
        if let Some(c) = &correlation {
            props.insert("correlationId".to_string(), c.clone());
        }
        let payload = serde_json::to_vec(&body).expect("encodes");
        let t = track(&payload, &meta(Some(&user), &props)).map_err(TestCaseError::fail)?;
        let expected = TrackInteraction {
            interaction_id: command_id.unwrap_or_else(|| derived_id(IDENTITY)),
            user_id: user,
            interaction_type: ty,
            target: Target { id: tid, kind },
            campaign_id: campaign,
            affiliate_id: None,
            occurred_at: at,
            correlation_id: correlation,
            format: CommandFormat::OriginalTrack,
        };
        prop_assert_eq!(t, expected);
    }

    #[test]
    fn original_create_interaction_round_trips(
        user in prop_oneof![
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            non_blank().prop_map(serde_json::Value::String),
        ],
        ty in type_spelling(),
        at in instant(),
        key in prop::option::of(non_blank()),
    ) {
        let body = serde_json::json!({
            "type": "create_interaction",
            "user_id": user,
            "interaction": ty,
            "timestamp": rfc3339(at),
        });
        let payload = serde_json::to_vec(&body).expect("encodes");
        let props = HashMap::new();
        let t = track(&payload, &meta(key.as_deref(), &props)).map_err(TestCaseError::fail)?;
        let user_id = match user {
            serde_json::Value::String(s) => s,
            n => n.to_string(),
        };
        let expected = TrackInteraction {
            interaction_id: derived_id(IDENTITY),
            user_id,
            interaction_type: ty,
            target: Target { id: "none".into(), kind: "none".into() },
            campaign_id: None,
            affiliate_id: None,
            occurred_at: at,
            correlation_id: None,
            format: CommandFormat::OriginalCreate,
        };
        prop_assert_eq!(t, expected);
    }
}

/// Message properties as a transport may carry them: known names with
/// plausible or arbitrary values, and arbitrary names.
fn properties() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        Just("name".to_string()),
        Just("content-type".to_string()),
        Just("content_type".to_string()),
        Just("commandId".to_string()),
        Just("eventTime".to_string()),
        Just("correlationId".to_string()),
        "\\PC{0,8}",
    ];
    let value = prop_oneof![
        Just("application/json".to_string()),
        Just("application/msgpack".to_string()),
        Just("text/plain".to_string()),
        Just("BuildInteractionsInfo".to_string()),
        Just("TrackInteraction".to_string()),
        Just(String::new()),
        "-?[0-9]{1,20}",
        any::<String>(),
    ];
    prop::collection::hash_map(name, value, 0..5)
}

/// Payloads: random bytes, valid commands with bytes overwritten and the
/// end cut off, or just over the size limit.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let valid = (canonical(), any::<bool>()).prop_map(|(c, msgpack)| {
        if msgpack {
            rmp_serde::to_vec_named(&c).expect("encodes")
        } else {
            serde_json::to_vec(&c).expect("encodes")
        }
    });
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6);
    let mutated = (valid, edits, any::<prop::sample::Index>()).prop_map(|(mut p, edits, cut)| {
        for (at, b) in edits {
            let i = at.index(p.len());
            p[i] = b;
        }
        p.truncate(cut.index(p.len() + 1));
        p
    });
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..512),
        4 => mutated,
        1 => any::<u8>().prop_map(|b| vec![b; MAX_PAYLOAD_BYTES + 1]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_command_never_panics(
        payload in payload(),
        props in properties(),
        key in prop::option::of(text()),
    ) {
        let m = meta(key.as_deref(), &props);
        let decoded = decode_command(&payload, &m);
        if payload.len() > MAX_PAYLOAD_BYTES {
            prop_assert_eq!(decoded.map_err(|e| e.reason), Err(RejectReason::Oversize));
        } else if let Ok(Command::Track(t)) = decoded {
            prop_assert!(!t.interaction_id.is_empty());
            prop_assert!(!t.user_id.is_empty());
        }
    }
}
