//! Tests of the command decoder: every accepted wire format, the defaults
//! for ids, keys and times, and the errors for bad input.

use super::*;

fn meta<'a>(key: Option<&'a str>, props: Option<&'a HashMap<String, String>>) -> MessageMeta<'a> {
    MessageMeta {
        key,
        properties: props,
        identity: "embedded:0:42",
        published_at: Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    }
}

fn track(payload: &str, m: &MessageMeta<'_>) -> TrackInteraction {
    match decode_command(payload.as_bytes(), m).unwrap() {
        Command::Track(t) => t,
        other => panic!("expected a track command, got {other:?}"),
    }
}

#[test]
fn canonical_json() {
    let t = track(
        r#"{"interaction_id":"7d3c","user_id":"u-1","interaction_type":"click","target":{"id":"post-9","type":"post"},"campaign_id":"c-1","affiliate_id":"a-7","occurred_at":"2026-11-29T10:00:00Z"}"#,
        &meta(None, None),
    );
    assert_eq!(t.format, CommandFormat::Canonical);
    assert_eq!(t.interaction_id, "7d3c");
    assert_eq!(t.user_id, "u-1");
    assert_eq!(
        t.target,
        Target {
            id: "post-9".into(),
            kind: "post".into()
        }
    );
    assert_eq!(t.affiliate_id.as_deref(), Some("a-7"));
    assert_eq!(
        t.occurred_at,
        Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()
    );
}

#[test]
fn original_track_interaction_uses_key_then_id() {
    let mut props = HashMap::new();
    props.insert("name".to_string(), "TrackInteraction".to_string());
    props.insert("correlationId".to_string(), "corr-1".to_string());
    let body = r#"{"interaction_type":"click","target_element_id":"post-42","target_element_type":"post","campaign_id":"camp-7","timestamp":"2025-09-10T12:00:00Z"}"#;
    let keyed = track(body, &meta(Some("user-5"), Some(&props)));
    assert_eq!(keyed.format, CommandFormat::OriginalTrack);
    assert_eq!(keyed.user_id, "user-5");
    assert_eq!(keyed.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(keyed.target.id, "post-42");
    // No key: the interaction id (derived from the identity) is the key.
    let unkeyed = track(body, &meta(None, Some(&props)));
    assert_eq!(unkeyed.user_id, unkeyed.interaction_id);
    assert_eq!(unkeyed.interaction_id, derived_id("embedded:0:42"));
}

#[test]
fn a_blank_user_id_is_kept_for_the_rules_to_refuse() {
    // Given a command that names its user, but with blanks only
    let body = r#"{"user_id":"  ","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c"}"#;
    // When it is decoded, with or without a message key
    for key in [None, Some("user-5")] {
        let t = track(body, &meta(key, None));
        // Then it is not filed under the key or the interaction id
        assert_eq!(t.user_id, "  ");
        let refused = crate::domain::validate(&t, Utc::now()).unwrap_err();
        assert_eq!(refused.reason, RejectReason::MissingUser);
    }
}

#[test]
fn original_create_interaction_numeric_user() {
    let t = track(
        r#"{"type":"create_interaction","user_id":123,"interaction":"like","timestamp":"2024-06-01T12:00:00Z"}"#,
        &meta(Some("test"), None),
    );
    assert_eq!(t.format, CommandFormat::OriginalCreate);
    assert_eq!(t.user_id, "123");
    assert_eq!(t.interaction_type, "like");
    assert_eq!(t.target.id, "none");
    assert_eq!(t.campaign_id, None);
}

#[test]
fn derived_id_is_stable_per_identity() {
    assert_eq!(derived_id("a:1"), derived_id("a:1"));
    assert_ne!(derived_id("a:1"), derived_id("a:2"));
}

#[test]
fn msgpack_canonical() {
    let c = CanonicalCommand {
        interaction_id: Some("i-9".into()),
        user_id: "u-2".into(),
        interaction_type: "view".into(),
        target: Target {
            id: "b-1".into(),
            kind: "banner".into(),
        },
        campaign_id: Some("c-2".into()),
        affiliate_id: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
    };
    let bytes = rmp_serde::to_vec_named(&c).unwrap();
    let mut props = HashMap::new();
    props.insert(
        "content-type".to_string(),
        "application/msgpack".to_string(),
    );
    match decode_command(&bytes, &meta(None, Some(&props))).unwrap() {
        Command::Track(t) => {
            assert_eq!(t.format, CommandFormat::MessagePack);
            assert_eq!(t.interaction_id, "i-9");
            assert_eq!(t.user_id, "u-2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn saga_step() {
    let mut props = HashMap::new();
    props.insert("name".to_string(), "BuildInteractionsInfo".to_string());
    let body = r#"{"saga_id":"s-1","payload":{"post_id":"post-42","start_date":"2025-09-01","end_date":"2025-09-30"}}"#;
    match decode_command(body.as_bytes(), &meta(None, Some(&props))).unwrap() {
        Command::BuildInteractionsInfo(b) => {
            assert_eq!(b.saga_id, "s-1");
            assert_eq!(b.end_date, NaiveDate::from_ymd_opt(2025, 9, 30).unwrap());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_inputs_have_reasons() {
    let m = meta(None, None);
    let reason = |p: &[u8], m: &MessageMeta<'_>| decode_command(p, m).unwrap_err().reason;
    assert_eq!(reason(b"{not json", &m), RejectReason::Malformed);
    assert_eq!(reason(b"[1,2]", &m), RejectReason::Malformed);
    assert_eq!(reason(&[0xff, 0xfe], &m), RejectReason::Malformed);
    assert_eq!(
        reason(br#"{"type":"delete_everything"}"#, &m),
        RejectReason::UnknownCommand
    );
    assert_eq!(
        reason(br#"{"user_id":"u","interaction_type":"click","target":{"id":"x","type":"y"},"occurred_at":"yesterday"}"#, &m),
        RejectReason::Malformed
    );
    assert_eq!(
        reason(&vec![b' '; MAX_PAYLOAD_BYTES + 1], &m),
        RejectReason::Oversize
    );
    let mut props = HashMap::new();
    props.insert("name".to_string(), "DropTables".to_string());
    assert_eq!(
        reason(b"{}", &meta(None, Some(&props))),
        RejectReason::UnknownCommand
    );
    let mut props = HashMap::new();
    props.insert("content-type".to_string(), "application/xml".to_string());
    assert_eq!(
        reason(b"<a/>", &meta(None, Some(&props))),
        RejectReason::UnsupportedEncoding
    );
}

#[test]
fn missing_timestamp_falls_back_to_event_time_then_publish_time() {
    let mut props = HashMap::new();
    props.insert("eventTime".to_string(), "1764410400000".to_string());
    let body = r#"{"user_id":"u","interaction_type":"click","target":{"id":"x","type":"y"},"campaign_id":"c"}"#;
    let t = track(body, &meta(None, Some(&props)));
    assert_eq!(t.occurred_at.timestamp_millis(), 1_764_410_400_000);
    let t = track(body, &meta(None, None));
    assert_eq!(
        t.occurred_at,
        Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap()
    );
}

#[test]
fn only_known_fields_are_kept_and_decode_the_same() {
    // Given commands of every JSON format, with unknown fields, one large
    let junk = "x".repeat(30_000);
    let bodies = [
        format!(
            r#"{{"interaction_id":"i-1","user_id":"u-1","interaction_type":"click","target":{{"id":"p","type":"post","extra":"{junk}"}},"campaign_id":7,"occurred_at":"2026-11-29T10:00:00Z","junk":"{junk}"}}"#
        ),
        format!(
            r#"{{"interaction_type":"view","target_element_id":42,"target_element_type":"post","campaign_id":"c","timestamp":"2025-09-10T12:00:00Z","junk":["{junk}"]}}"#
        ),
        format!(
            r#"{{"type":"create_interaction","user_id":123,"interaction":"like","timestamp":"2024-06-01T12:00:00Z","junk":{{"a":"{junk}"}}}}"#
        ),
    ];
    for body in bodies {
        // When only the known fields are kept
        let m = meta(Some("key-1"), None);
        let (_, kept) = decode_command_known_fields(body.as_bytes(), &m).unwrap();
        let kept = kept.unwrap();
        // Then the junk is gone and the command is the same
        assert!(kept.len() < 400, "{}", String::from_utf8_lossy(&kept));
        assert_eq!(
            track(&String::from_utf8(kept).unwrap(), &m),
            track(&body, &m)
        );
    }
    assert!(decode_command_known_fields(b"[1,2]", &meta(None, None)).is_err());
}

#[test]
fn json_and_any_json_suffix_are_accepted_in_any_case() {
    for accepted in [
        "application/json",
        "Application/JSON",
        "application/vnd.alpes+json",
        "application/problem+JSON",
    ] {
        assert!(is_json_media_type(accepted), "{accepted}");
    }
    for refused in [
        "text/plain",
        "application/jsonx",
        "json",
        "",
        "+jso",
        "éjson",
    ] {
        assert!(!is_json_media_type(refused), "{refused}");
    }
}
