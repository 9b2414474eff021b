//! Golden files of every payload that leaves the process. A failing test
//! here means a public contract changed: if the change is intended, run
//! `UPDATE_GOLDEN=1 cargo test --lib wire` and review the diff of
//! `src/wire/golden/` like an API change (consumers must be told).

use super::*;
use crate::domain::Target as DomainTarget;
use chrono::TimeZone;
use std::path::PathBuf;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, h, m, 7).single().unwrap()
}

/// An event with every field of the current schema.
fn current() -> InteractionTracked {
    InteractionTracked {
        schema_version: 2,
        interaction_id: "i-42".into(),
        user_id: "u-7".into(),
        seq: 3,
        interaction_type: InteractionType::Like,
        target: DomainTarget {
            id: "post-9".into(),
            kind: "post".into(),
        },
        campaign_id: Some("spring".into()),
        occurred_at: at(9, 26),
        affiliate_id: Some("aff-1".into()),
        correlation_id: Some("corr-5".into()),
        recorded_at: Some(at(9, 27)),
    }
}

/// A version 1 event: no affiliate, correlation or recorded time.
fn v1() -> InteractionTracked {
    InteractionTracked {
        schema_version: 1,
        interaction_id: "i-1".into(),
        user_id: "u-7".into(),
        seq: 1,
        interaction_type: InteractionType::Click,
        target: DomainTarget {
            id: "banner-2".into(),
            kind: "banner".into(),
        },
        campaign_id: None,
        occurred_at: at(8, 0),
        affiliate_id: None,
        correlation_id: None,
        recorded_at: None,
    }
}

fn request() -> BuildInteractionsInfo {
    BuildInteractionsInfo {
        saga_id: "saga-3".into(),
        post_id: "post-9".into(),
        start_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        end_date: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
        correlation_id: Some("corr-5".into()),
    }
}

/// Compares `value`'s JSON with the golden file `name`, or writes it with
/// `UPDATE_GOLDEN=1`. Also checks the invariant the module promises: the
/// direct serialization and the one through a `Value` are the same bytes.
fn golden(name: &str, value: &impl Serialize) {
    let direct = serde_json::to_string_pretty(value).unwrap();
    let through_value =
        serde_json::to_string_pretty(&serde_json::to_value(value).unwrap()).unwrap();
    assert_eq!(direct, through_value, "{name}: field order is not sorted");
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "src/wire/golden", name]
        .iter()
        .collect();
    let text = format!("{direct}\n");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(text, want, "{name} changed: a public contract");
}

#[test]
fn an_interaction_with_every_field() {
    golden("interaction.json", &Interaction::from(&current()));
}

#[test]
fn a_version_1_interaction_falls_back_to_occurred_at_and_nulls() {
    let ev = v1();
    let view = Interaction::from(&ev);
    assert_eq!(view.recorded_at, ev.occurred_at);
    golden("interaction_v1.json", &view);
}

#[test]
fn the_saga_answer_lists_and_counts_the_interactions() {
    let (a, b, req) = (current(), v1(), request());
    let answer = InteractionsInfoBuilt::new(&req, [&a, &b]);
    assert_eq!(answer.count, 2);
    golden("interactions_info_built.json", &answer);
}

#[test]
fn an_empty_saga_answer_still_names_the_request() {
    let req = request();
    golden(
        "interactions_info_built_empty.json",
        &InteractionsInfoBuilt::new(&req, []),
    );
}

#[test]
fn message_properties_of_each_payload() {
    let ev = current();
    let p = tracked_properties(&ev);
    let mut got: Vec<_> = p.iter().collect();
    got.sort();
    let want = [
        ("correlationId", "corr-5"),
        ("eventTime", "1773480367000"),
        ("name", "InteractionTracked"),
        ("schema_version", "2"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    assert!(!tracked_properties(&v1()).contains_key(PROP_CORRELATION_ID));

    let b = built_properties(&request());
    assert_eq!(b[PROP_NAME], "InteractionsInfoBuilt");
    assert_eq!(b[PROP_SAGA_ID], "saga-3");
    assert_eq!(b[PROP_CORRELATION_ID], "corr-5");
    assert_eq!(b.len(), 3);
}
