//! The real binary under load, killed with SIGKILL midway and restarted:
//! every command answered 202 is exactly one event, per-user sequences are
//! gap-free, the stats equal a recount, and `tracking verify` passes.

mod common;

use common::{command, get, post_all, tracking, user_events, wait_for, Worker};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TOTAL: usize = 10_000;
const USERS: usize = 400;
const CLIENTS: usize = 8;

/// Posts commands `range` from `CLIENTS` threads; returns (accepted ids, failed count).
fn post_range(
    worker_addr: std::net::SocketAddr,
    range: std::ops::Range<usize>,
) -> (Vec<String>, usize) {
    let jobs = range
        .map(|i| {
            // Half the commands carry their own id; the others get one from the server.
            let id = (i % 2 == 0).then(|| format!("crash-{i}"));
            let user = format!("user-{}", i % USERS);
            let ty = ["click", "view", "like"][i % 3];
            let day = format!("2026-11-{:02}T10:00:00Z", 20 + i % 5);
            (
                worker_addr,
                command(id.as_deref(), &user, ty, "c-crash", &day),
            )
        })
        .collect();
    post_all(jobs, CLIENTS)
}

#[test]
fn kill_9_midway_loses_nothing_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut worker = Worker::start(&data, &[]);

    // First half, then SIGKILL while the pipeline is still busy.
    let (mut accepted, mut failed) = {
        let addr = worker.addr;
        let killer = std::thread::spawn(move || post_range(addr, 0..TOTAL / 2));
        let r = killer.join().unwrap();
        worker.kill9();
        r
    };
    // Restart on the same data; redeliveries must not double anything.
    let worker2 = Worker::start(&data, &[]);
    let (more, more_failed) = post_range(worker2.addr, TOTAL / 2..TOTAL);
    accepted.extend(more);
    failed += more_failed;
    assert!(accepted.len() >= TOTAL - failed);

    // Every 202 becomes an event (wait until all are persisted).
    let addr = worker2.addr;
    let mut users: HashMap<String, Vec<u64>> = HashMap::new();
    for id in &accepted {
        let e = wait_for(
            &format!("interaction {id}"),
            Duration::from_secs(60),
            || {
                let r = get(addr, &format!("/tracking/interactions/{id}"));
                (r.status == 200).then(|| r.json())
            },
        );
        assert_eq!(e["interaction_id"], id.as_str());
        users
            .entry(e["user_id"].as_str().unwrap().to_string())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "ids answered twice");

    // Per user: sequence numbers 1..=n without gaps; n counts every event
    // of the user (accepted ones, plus at most the failed posts that may
    // still have been appended before the kill).
    let mut total_events = 0;
    for user in (0..USERS).map(|u| format!("user-{u}")) {
        let seqs: Vec<u64> = user_events(addr, &user).iter().map(|e| e.1).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "gap or disorder for {user}");
        total_events += seqs.len();
    }
    assert!(total_events >= accepted.len());
    assert!(
        total_events <= accepted.len() + failed,
        "more events ({total_events}) than commands that could have been appended"
    );

    // Stats equal the recount, once projected.
    wait_for("stats to catch up", Duration::from_secs(60), || {
        let r = get(
            addr,
            "/tracking/stats/daily?from=2026-11-20&to=2026-11-24&campaign_id=c-crash",
        )
        .json();
        let sum: u64 = r["items"]
            .as_array()?
            .iter()
            .map(|i| i["count"].as_u64().unwrap_or(0))
            .sum();
        (sum == total_events as u64).then_some(())
    });

    // Graceful stop, then the offline verification.
    let mut worker2 = worker2;
    assert_eq!(
        worker2.term(Duration::from_secs(30)),
        Some(0),
        "{}",
        worker2.logs()
    );
    let (code, out, err) = tracking(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify failed:\n{out}\n{err}");
    assert!(out.contains("0 differences"), "{out}");
}
