//! Logs carry no payload contents beyond ids: commands whose non-id
//! fields hold a marker (an invalid interaction type, an unparsable
//! timestamp, malformed JSON, an unknown command type) are sent over HTTP
//! to a worker logging at debug level, and straight into the command log
//! of an in-process service (as Pulsar would deliver them, to the
//! consumer's decoder). The marker reaches the client's error answer and
//! the rejection records, never the log.

mod common;

use common::{command, get, post_json, wait_for, Worker};
use std::time::Duration;

const MARKER: &str = "zzpayloadmarkerzz";

fn assert_no_marker(logs: &str) {
    let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(MARKER)).collect();
    assert!(
        leaked.is_empty(),
        "payload contents in the logs:\n{}",
        leaked.join("\n")
    );
}

#[test]
fn rejected_payload_contents_never_reach_the_logs() {
    // Only test of this binary: setting the variable races with nothing.
    std::env::set_var("TRACKING_LOG", "debug");
    let tmp = tempfile::tempdir().unwrap();
    let mut worker = Worker::start(&tmp.path().join("data"), &[]);
    let bodies = [
        command(
            Some("log-1"),
            "log-u",
            MARKER,
            "c-log",
            "2026-11-20T10:00:00Z",
        ),
        command(Some("log-2"), "log-u", "click", "c-log", MARKER),
        format!(r#"{{"user_id":"log-u","interaction_type":"click","{MARKER}"#),
        command(
            Some("log-3"),
            "log-u",
            "click",
            "c-log",
            "2026-11-20T10:00:00Z",
        ),
    ];
    let mut answered_with_marker = 0;
    for b in &bodies {
        let r = post_json(worker.addr, "/tracking/interactions", b).unwrap();
        assert!(
            r.status == 202 || r.status == 400,
            "{} {}",
            r.status,
            r.body
        );
        answered_with_marker += usize::from(r.body.contains(MARKER));
    }
    wait_for("the valid command stored", Duration::from_secs(30), || {
        (get(worker.addr, "/tracking/interactions/log-3").status == 200).then_some(())
    });
    assert_eq!(worker.term(Duration::from_secs(30)), Some(0));
    let logs = worker.logs();
    assert!(
        logs.contains("DEBUG"),
        "the worker did not log at debug level"
    );
    assert_no_marker(&logs);
    // The client is told what was wrong (its own data, on its own answer).
    assert!(
        answered_with_marker >= 1,
        "no error answer quoted the payload"
    );
}

/// Captures everything the in-process service logs.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Messages that reach the log undecoded (as from Pulsar) are refused by
/// the consumer's decoder, whose errors quote the payload: the logs get the
/// reason only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_log_messages_are_logged_by_reason_only() {
    use alpes_tracking::log::NewRecord;
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let tmp = tempfile::tempdir().unwrap();
    let svc = alpes_tracking::app::start(common::service_config(tmp.path()))
        .await
        .unwrap();
    let bad = [
        format!(r#"{{"user_id":"log-u","interaction_type":"click","{MARKER}"#),
        format!(r#"{{"type":"{MARKER}","user_id":"log-u"}}"#),
        command(
            Some("log-9"),
            "log-u",
            MARKER,
            "c-log",
            "2026-11-20T10:00:00Z",
        ),
    ];
    let records = bad
        .iter()
        .map(|b| NewRecord {
            key: "log-u".into(),
            payload: b.clone().into_bytes(),
            properties: Default::default(),
        })
        .collect();
    svc.log.append(records).await.unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rejected: u64 = svc
            .store
            .status_stats(day, chrono::Utc::now().date_naive())
            .await
            .unwrap()
            .iter()
            .map(|s| s.rejected)
            .sum();
        if rejected >= bad.len() as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rejections not recorded: {rejected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    svc.stop().await.unwrap();
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("command rejected"),
        "no rejection logged:\n{logs}"
    );
    assert_no_marker(&logs);
}
