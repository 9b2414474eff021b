//! Workers on a shared ScyllaDB store (a real Apache Cassandra 5 in CI:
//! `compose/native/cassandra.sh up`, then `SCYLLA_NODES`). `#[ignore]`d in
//! a plain `cargo test`; `.ci/run` runs them:
//!
//! ```text
//! compose/native/cassandra.sh up && eval "$(compose/native/cassandra.sh env)"
//! cargo test --test scylla -- --ignored --test-threads=1
//! ```
//!
//! The worker has its own embedded command log (the log and the store are
//! chosen independently). A shared store takes its commands from one log:
//! a second worker with a log of its own is refused (a fleet shares a
//! Pulsar topic: `tests/pulsar.rs` and the fault suite).

mod common;

use common::{command, get, post_all, tracking, user_events, wait_for, Worker};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;

fn nodes() -> String {
    std::env::var("SCYLLA_NODES")
        .expect("SCYLLA_NODES must name a CQL server (compose/native/cassandra.sh up)")
}

/// A fresh keyspace with the schema applied by `tracking schema apply`.
fn keyspace(name: &str) -> String {
    let ks = format!("it_{name}_{}", std::process::id());
    let n = nodes();
    let (code, out, err) = tracking(&[
        "schema",
        "apply",
        "--scylla-nodes",
        &n,
        "--scylla-keyspace",
        &ks,
    ]);
    assert_eq!(code, 0, "schema apply failed:\n{out}\n{err}");
    assert!(out.contains("schema version 2"), "{out}");
    ks
}

fn store_args(ks: &str) -> Vec<String> {
    [
        "--scylla-nodes",
        &nodes(),
        "--scylla-keyspace",
        ks,
        "--scylla-consistency",
        "one",
    ]
    .map(String::from)
    .to_vec()
}

fn start(dir: &Path, ks: &str) -> Worker {
    let args = store_args(ks);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Worker::start(dir, &refs)
}

fn verify(ks: &str) -> String {
    let args = store_args(ks);
    let mut all = vec!["verify"];
    all.extend(args.iter().map(String::as_str));
    let (code, out, err) = tracking(&all);
    assert_eq!(code, 0, "verify failed:\n{out}\n{err}");
    assert!(out.contains(" 0 differences"), "{out}");
    out
}

/// Sum of the daily counts of a campaign, as one worker serves them.
fn daily_total(addr: SocketAddr, campaign: &str) -> u64 {
    let r = get(
        addr,
        &format!("/tracking/stats/daily?from=2026-11-20&to=2026-11-24&campaign_id={campaign}"),
    );
    r.json()["items"]
        .as_array()
        .map(|items| items.iter().map(|i| i["count"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

fn cmd(i: usize, users: usize, campaign: &str) -> String {
    let user = format!("{campaign}-user-{}", i % users);
    let ty = ["click", "view", "like"][i % 3];
    let day = format!("2026-11-{:02}T10:00:00Z", 20 + i % 5);
    command(Some(&format!("{campaign}-{i}")), &user, ty, campaign, &day)
}

#[test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
fn one_worker_counts_exactly_and_a_second_log_is_refused() {
    let ks = keyspace("two");
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("a"), &ks);
    // A second worker with a command log of its own: refused at start.
    let args = store_args(&ks);
    let other = tmp.path().join("b");
    let other = other.to_string_lossy();
    let mut all = vec!["run", "--data-dir", &*other, "--listen", "127.0.0.1:0"];
    all.extend(args.iter().map(String::as_str));
    let (code, _, err) = tracking(&all);
    assert_ne!(code, 0);
    assert!(
        err.contains("another worker with an embedded command log"),
        "{err}"
    );
    let (total, users, campaign) = (3000, 60, "c-two");
    // Every 10th command is sent twice (the same interaction id: one event).
    let mut jobs = Vec::new();
    for i in 0..total {
        jobs.push((a.addr, cmd(i, users, campaign)));
        if i % 10 == 0 {
            jobs.push((a.addr, cmd(i, users, campaign)));
        }
    }
    let started = Instant::now();
    let (accepted, failed) = post_all(jobs, CLIENTS);
    assert_eq!(failed, 0);
    let unique: HashSet<String> = accepted.iter().cloned().collect();
    assert_eq!(unique.len(), total);
    wait_for("every event counted", Duration::from_secs(120), || {
        (daily_total(a.addr, campaign) == total as u64).then_some(())
    });
    eprintln!(
        "{total} commands (+{} duplicates) in {:?}",
        total / 10,
        started.elapsed()
    );
    let mut seen = HashSet::new();
    for u in 0..users {
        let user = format!("{campaign}-user-{u}");
        let events = user_events(a.addr, &user);
        let seqs: Vec<u64> = events.iter().map(|e| e.1).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gap in {user}"
        );
        for (id, _) in events {
            assert!(seen.insert(id.clone()), "{id} stored twice");
        }
        let stats = get(a.addr, &format!("/tracking/users/{user}/stats")).json();
        assert_eq!(stats["total"].as_u64(), Some(seqs.len() as u64));
    }
    assert_eq!(seen, unique);
    let status = get(a.addr, "/tracking/stats/status").json();
    assert!(
        status["items"].as_array().is_some_and(|i| !i.is_empty()),
        "{status}"
    );
    drop(a);
    verify(&ks);
}

#[test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
fn kill_9_mid_stream_then_restart_loses_and_doubles_nothing() {
    let ks = keyspace("kill");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    let mut w = start(&dir, &ks);
    let (total, users, campaign) = (4000, 200, "c-kill");
    let jobs: Vec<_> = (0..total)
        .map(|i| (w.addr, cmd(i, users, campaign)))
        .collect();
    // SIGKILL while commands are still being posted and processed.
    let poster = std::thread::spawn(move || post_all(jobs, CLIENTS));
    wait_for("some events", Duration::from_secs(60), || {
        (daily_total(w.addr, campaign) > 500).then_some(())
    });
    w.kill9();
    let (mut accepted, failed) = poster.join().unwrap();
    // Restart on the same log: what was not acknowledged is redelivered.
    let w = start(&dir, &ks);
    let rest: Vec<_> = (0..total)
        .map(|i| (w.addr, cmd(i, users, campaign)))
        .collect();
    let (again, again_failed) = post_all(rest, CLIENTS);
    assert_eq!(again_failed, 0);
    accepted.extend(again);
    let unique: HashSet<String> = accepted.iter().cloned().collect();
    assert_eq!(unique.len(), total, "failed before the kill: {failed}");
    wait_for("every event counted", Duration::from_secs(120), || {
        (daily_total(w.addr, campaign) == total as u64).then_some(())
    });
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for u in 0..users {
        let user = format!("{campaign}-user-{u}");
        let events = user_events(w.addr, &user);
        let seqs: Vec<u64> = events.iter().map(|e| e.1).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gap in {user}"
        );
        per_user.insert(user, events.len());
    }
    assert_eq!(per_user.values().sum::<usize>(), total);
    let mut w = w;
    assert_eq!(w.term(Duration::from_secs(30)), Some(0), "{}", w.logs());
    verify(&ks);
}
