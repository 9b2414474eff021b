//! A store that lost acknowledged data while the command log was kept
//! (restored from an older backup, deleted) is refused at start with what
//! was lost and how to recover; `--log-replay-retained` then brings back
//! exactly what the log still holds, nothing doubled. Black box, on the
//! real binary.

mod common;

use common::{binary, command, get, post_json, wait_for, Worker};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Posts `ids` (one user each of four) and waits until all are counted.
fn post_and_settle(worker: &Worker, ids: std::ops::Range<usize>, total: u64) {
    for i in ids {
        let body = command(
            Some(&format!("w-{i}")),
            &format!("u-{}", i % 4),
            "click",
            "c-w",
            "2026-11-29T09:00:00Z",
        );
        let r = post_json(worker.addr, "/tracking/interactions", &body).unwrap();
        assert_eq!(r.status, 202);
    }
    assert_eq!(count(worker, total), total);
}

/// Waits until the daily count reaches `want` (or times out), returns it.
fn count(worker: &Worker, want: u64) -> u64 {
    let read = || {
        get(
            worker.addr,
            "/tracking/stats/daily?from=2026-11-29&to=2026-11-29&campaign_id=c-w",
        )
        .json()["items"][0]["count"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_for("the count", Duration::from_secs(30), || {
        (read() >= want).then_some(())
    });
    read()
}

/// Runs `tracking run` expecting it to refuse: its exit code and stderr.
fn refused_run(data: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("PULSAR_URL")
        .env_remove("SCYLLA_NODES")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The worker's `tracking_commands_duplicate_total`.
fn duplicates(worker: &Worker) -> u64 {
    let text = get(worker.addr, "/metrics").body;
    text.lines()
        .filter(|l| l.starts_with("tracking_commands_duplicate_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_older_store_backup_is_refused_and_the_log_replays_what_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup = tmp.path().join("store-backup");
    // Given a backup of the store taken after 20 commands
    let mut worker = Worker::start(&data, &[]);
    post_and_settle(&worker, 0..20, 20);
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    copy_dir(&data.join("store"), &backup);
    // and 30 more commands acknowledged and committed after it
    let mut worker = Worker::start(&data, &[]);
    post_and_settle(&worker, 20..50, 50);
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    // When the backup is restored while the log is kept
    std::fs::remove_dir_all(data.join("store")).unwrap();
    copy_dir(&backup, &data.join("store"));
    // Then the service refuses to start and says what is lost and what to do
    let (code, err) = refused_run(&data);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("behind the command log"), "{err}");
    assert!(err.contains("--log-replay-retained"), "{err}");
    // And replaying what the log retains brings back exactly the 50: the
    // 20 the backup holds are found as duplicates, the 30 others come back
    let mut worker = Worker::start(&data, &["--log-replay-retained"]);
    wait_for("the 20 duplicates", Duration::from_secs(30), || {
        (duplicates(&worker) >= 20).then_some(())
    });
    assert_eq!(count(&worker, 50), 50);
    assert_eq!(duplicates(&worker), 20);
    for i in [0, 19, 20, 49] {
        let r = get(worker.addr, &format!("/tracking/interactions/w-{i}"));
        assert_eq!(r.status, 200, "w-{i}");
    }
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    // and the next start needs no flag
    let worker = Worker::start(&data, &[]);
    assert_eq!(count(&worker, 50), 50);
}

#[test]
fn a_deleted_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut worker = Worker::start(&data, &[]);
    post_and_settle(&worker, 0..10, 10);
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    std::fs::remove_dir_all(data.join("store")).unwrap();
    let (code, err) = refused_run(&data);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("10 acknowledged events or rejections are gone"),
        "{err}"
    );
}

#[test]
fn a_store_journal_cut_short_is_refused_and_the_log_replays_what_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Given 60 commands acknowledged, persisted and committed
    let mut worker = Worker::start(&data, &[]);
    post_and_settle(&worker, 0..60, 60);
    assert_eq!(worker.term(Duration::from_secs(25)), Some(0));
    // When the store's journal loses its last quarter
    let mut cut = 0;
    for entry in std::fs::read_dir(data.join("store").join("events")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let len = std::fs::metadata(&path).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len * 3 / 4)
                .unwrap();
            cut += 1;
        }
    }
    assert!(cut > 0, "no journal file in the store");
    // Then the start is refused, naming what is gone
    let (code, err) = refused_run(&data);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("behind the command log"), "{err}");
    // And the replay brings every command back exactly once: what the cut
    // kept is found as duplicates, what it lost is appended again
    let worker = Worker::start(&data, &["--log-replay-retained"]);
    assert_eq!(count(&worker, 60), 60);
    let found = settled_duplicates(&worker);
    assert!(found < 60, "the cut lost nothing: the test cut no data");
    assert_eq!(count(&worker, 60), 60);
    for i in [0, 30, 59] {
        let r = get(worker.addr, &format!("/tracking/interactions/w-{i}"));
        assert_eq!(r.status, 200, "w-{i}");
    }
}

/// The duplicates counted once they stop moving (the replay has settled).
fn settled_duplicates(worker: &Worker) -> u64 {
    let mut last = u64::MAX;
    wait_for("the replay to settle", Duration::from_secs(30), || {
        let now = duplicates(worker);
        let settled = now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(300));
        settled.then_some(())
    });
    last
}
