//! `tracking check`, the fault suite's judge, on the embedded store: a run
//! whose manifest matches the store passes; a manifest that names an id
//! the store never got (lost), or a per-user order the store did not keep,
//! fails with the count. (The real-stack scenarios in loadtest/faults/ use
//! the same command against ScyllaDB and the dead-letter topic.)

mod common;

use common::{command, post_json, tracking, user_events, wait_for, Worker};
use std::time::Duration;

const USERS: usize = 3;
const PER_USER: usize = 5;

fn line(id: &str, user: &str, kind: &str) -> String {
    serde_json::json!({"id": id, "user": user, "kind": kind}).to_string()
}

#[test]
fn check_passes_on_a_faithful_store_and_counts_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut worker = Worker::start(&data, &[]);
    // One command at a time: each user's commands reach the log in order.
    let mut manifest = Vec::new();
    for i in 0..USERS * PER_USER {
        let (user, id) = (format!("chk-u{}", i % USERS), format!("chk-{i}"));
        let body = command(Some(&id), &user, "click", "c-chk", "2026-11-20T10:00:00Z");
        let r = post_json(worker.addr, "/tracking/interactions", &body).unwrap();
        assert_eq!(r.status, 202, "{}", r.body);
        manifest.push(line(&id, &user, "valid"));
    }
    // A resend of an earlier id (deduplicated).
    let resend = command(
        Some("chk-0"),
        "chk-u0",
        "click",
        "c-chk",
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(
        post_json(worker.addr, "/tracking/interactions", &resend)
            .unwrap()
            .status,
        202
    );
    manifest.push(line("chk-0", "chk-u0", "duplicate"));
    for u in 0..USERS {
        wait_for("every event stored", Duration::from_secs(30), || {
            (user_events(worker.addr, &format!("chk-u{u}")).len() == PER_USER).then_some(())
        });
    }
    assert_eq!(worker.term(Duration::from_secs(30)), Some(0));

    let dir = data.to_str().unwrap();
    let run = |lines: &[String]| {
        let path = tmp.path().join("manifest.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let report = tmp.path().join("check.json");
        let (code, out, err) = tracking(&[
            "check",
            "--data-dir",
            dir,
            "--manifest",
            path.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (code, format!("{out}{err}"), json)
    };

    let (code, out, json) = run(&manifest);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASSED"), "{out}");
    assert_eq!(json["expected"], (USERS * PER_USER) as u64);
    assert_eq!(json["events"], (USERS * PER_USER) as u64);
    assert_eq!(json["verify_differences"], 0);

    // An id the store never got: lost.
    let mut lost = manifest.clone();
    lost.push(line("chk-never-sent", "chk-u1", "valid"));
    let (code, out, json) = run(&lost);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json["lost"], 1, "{out}");
    assert!(out.contains("lost: chk-never-sent"), "{out}");

    // Two of a user's commands claimed in the other order: out of order.
    let mut swapped = manifest.clone();
    swapped.swap(0, USERS); // chk-0 and chk-3, both user chk-u0
    let (code, out, json) = run(&swapped);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json["out_of_order"], 1, "{out}");
    assert_eq!(json["lost"], 0);

    // A stored event the manifest does not know: unexpected.
    let mut short = manifest.clone();
    short.remove(1);
    let (code, out, json) = run(&short);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json["unexpected"], 1, "{out}");

    // A bad manifest is a clear error.
    let (code, out, _) = {
        let path = tmp.path().join("bad.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        let (c, o, e) = tracking(&[
            "check",
            "--data-dir",
            dir,
            "--manifest",
            path.to_str().unwrap(),
        ]);
        (c, format!("{o}{e}"), ())
    };
    assert_ne!(code, 0);
    assert!(out.contains("line 1 is not a manifest entry"), "{out}");
}
