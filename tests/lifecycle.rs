//! Lifecycle of the real binary: graceful shutdown on SIGTERM under load
//! (exit 0 within the grace period, nothing accepted lost), readiness, and
//! the verify/rebuild commands.

mod common;

use common::{command, get, post_json, tracking, wait_for, Worker};
use std::time::{Duration, Instant};

#[test]
fn sigterm_under_load_drains_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut worker = Worker::start(&data, &["--shutdown-grace", "20s"]);
    let addr = worker.addr;
    assert_eq!(get(addr, "/tracking/ready").status, 200);

    let poster = std::thread::spawn(move || {
        let mut accepted = Vec::new();
        for i in 0..3000 {
            let body = command(
                Some(&format!("term-{i}")),
                &format!("u-{}", i % 50),
                "click",
                "c-term",
                "2026-11-29T09:00:00Z",
            );
            match post_json(addr, "/tracking/interactions", &body) {
                Ok(r) if r.status == 202 => accepted.push(format!("term-{i}")),
                Ok(r) if r.status == 503 => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        accepted
    });
    wait_for("some load", Duration::from_secs(30), || {
        let r = get(addr, "/tracking/stats/status").json();
        let n: u64 = r["items"]
            .as_array()?
            .iter()
            .map(|i| i["accepted"].as_u64().unwrap_or(0))
            .sum();
        (n > 200).then_some(())
    });
    let started = Instant::now();
    let code = worker.term(Duration::from_secs(25));
    let took = started.elapsed();
    let accepted = poster.join().unwrap();
    assert_eq!(code, Some(0), "exit status; logs:\n{}", worker.logs());
    assert!(took < Duration::from_secs(20), "drain took {took:?}");
    assert!(worker.logs().contains("draining"), "{}", worker.logs());
    // The drain stops every actor in order; none fails on the way out.
    assert!(!worker.logs().contains("actor failed"), "{}", worker.logs());

    // Nothing accepted is lost: after a restart every id is there.
    let worker = Worker::start(&data, &[]);
    for id in &accepted {
        wait_for(id, Duration::from_secs(30), || {
            (get(worker.addr, &format!("/tracking/interactions/{id}")).status == 200).then_some(())
        });
    }
    drop(worker);
}

#[test]
fn verify_detects_and_rebuild_repairs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut worker = Worker::start(&data, &[]);
    for i in 0..50 {
        let r = post_json(
            worker.addr,
            "/tracking/interactions",
            &command(
                None,
                &format!("v-{}", i % 7),
                "like",
                "c-v",
                "2026-11-29T09:00:00Z",
            ),
        )
        .unwrap();
        assert_eq!(r.status, 202);
    }
    wait_for("projection", Duration::from_secs(30), || {
        let r = get(
            worker.addr,
            "/tracking/stats/daily?from=2026-11-29&to=2026-11-29&campaign_id=c-v",
        )
        .json();
        (r["items"][0]["count"] == 50).then_some(())
    });
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    let dir = data.to_str().unwrap();
    let (code, out, err) = tracking(&["verify", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verified 50 journal records (50 events): 0 differences"),
        "{out}"
    );
    let (code, out, err) = tracking(&["rebuild", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("rebuilding daily_stats: 50/50"),
        "progress line missing: {err}"
    );
    let (code, out, _) = tracking(&["verify", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn verify_and_rebuild_refuse_a_data_dir_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("dtaa");
    for command in ["verify", "rebuild"] {
        let (code, out, err) = tracking(&[command, "--data-dir", typo.to_str().unwrap()]);
        assert_ne!(code, 0, "{command} passed on a wrong path: {out}");
        assert!(err.contains("no event store at"), "{command}: {err}");
        assert!(!out.contains("0 differences"), "{command}: {out}");
        assert!(!typo.exists(), "{command} created {}", typo.display());
    }
}

#[test]
fn refuses_bad_pulsar_options_and_bad_flags_clearly() {
    let (code, _, err) = tracking(&[
        "run",
        "--pulsar-url",
        "http://127.0.0.1:6650",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("pulsar://"), "{err}");
    let (code, _, err) = tracking(&[
        "run",
        "--pulsar-url",
        "pulsar+ssl://127.0.0.1:6651",
        "--pulsar-tls-allow-insecure",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("allow-insecure"), "{err}");
    let (code, _, err) = tracking(&["run", "--scylla-nodes", " , ", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(err.contains("names no host"), "{err}");
    let (code, _, err) = tracking(&[
        "verify",
        "--scylla-nodes",
        "127.0.0.1:9042",
        "--scylla-keyspace",
        "bad-name",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a plain CQL identifier"), "{err}");
    let (code, _, err) = tracking(&["schema", "apply"]);
    assert_ne!(code, 0);
    assert!(err.contains("needs the ScyllaDB contact points"), "{err}");
    // Nothing listens on port 1: a clear connection error, not a hang.
    let (code, _, err) = tracking(&["schema", "status", "--scylla-nodes", "127.0.0.1:1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("connecting to ScyllaDB at 127.0.0.1:1"),
        "{err}"
    );
    let (code, _, err) = tracking(&[
        "run",
        "--scylla-nodes",
        "127.0.0.1:9042",
        "--scylla-consistency",
        "most",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown consistency level"), "{err}");
    let (code, _, err) = tracking(&["--shutdown-grace", "soon"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid duration"), "{err}");
    let (code, out, _) = tracking(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--data-dir",
        "--listen",
        "--partitions",
        "--shutdown-grace",
        "TRACKING_DATA_DIR",
        "PULSAR_URL",
        "PULSAR_TOKEN",
        "TOPIC_EVENTS_TRACKING",
        "TRACKING_DEAD_LETTER_TOPIC",
        "SCYLLA_NODES",
    ] {
        assert!(out.contains(flag), "--help does not document {flag}");
    }
}

/// A new command log gets the default partitions; an existing one keeps
/// its own count when none is configured, and a different count is refused.
#[tokio::test]
async fn an_existing_log_keeps_its_partitions_and_a_new_one_gets_the_default() {
    use alpes_tracking::app::{open_log, LogSettings, DEFAULT_PARTITIONS};
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let log = open_log(&fresh, None, LogSettings::default())
        .await
        .unwrap();
    assert_eq!(log.partitions(), DEFAULT_PARTITIONS);

    let older = tmp.path().join("older");
    drop(
        open_log(&older, Some(4), LogSettings::default())
            .await
            .unwrap(),
    );
    let log = open_log(&older, None, LogSettings::default())
        .await
        .unwrap();
    assert_eq!(log.partitions(), 4);
    drop(log);
    let refused = open_log(&older, Some(2), LogSettings::default()).await;
    let err = format!("{:#}", refused.err().expect("refused"));
    assert!(err.contains("4 partitions but 2 are configured"), "{err}");
}
