//! The memory log's tests: the command-log contract suite, the dead
//! letters it keeps, and the sink's injected failures.

use super::*;
use crate::log::contract::{log_contract_tests, Subject, PARTITIONS};

/// Small enough for the oversize case to be cheap.
const MAX_RECORD_BYTES: usize = 4096;

async fn subject() -> Subject {
    let mut current = MemoryLog::with_max_record_bytes(PARTITIONS, MAX_RECORD_BYTES);
    let log: Arc<dyn CommandLog> = current.clone();
    Subject::new(
        log,
        Some(MAX_RECORD_BYTES),
        move |_old| {
            current = current.reopen();
            let log: Arc<dyn CommandLog> = current.clone();
            async move { log }
        },
        (),
    )
}

log_contract_tests!(common: subject());
log_contract_tests!(counting: subject());

fn rec(key: &str, payload: &str) -> NewRecord {
    NewRecord {
        key: key.to_owned(),
        payload: payload.as_bytes().to_vec(),
        properties: Default::default(),
    }
}

#[tokio::test]
async fn dead_letters_are_kept_in_order_across_a_reopen_and_a_dead_handle_is_refused() {
    let log = MemoryLog::new(1);
    log.append(vec![rec("k", "a"), rec("k", "b")])
        .await
        .unwrap();
    let (mut source, acker) = log.open(0).await.unwrap();
    let got = source.next_batch(10).await.unwrap();
    assert_eq!(log.outstanding(0), 2);
    acker
        .dead_letter(&got[1], "malformed", "bad")
        .await
        .unwrap();
    acker
        .dead_letter(&got[0], "too_many_deliveries", "")
        .await
        .unwrap();

    let next = log.reopen();
    let reasons: Vec<(String, String)> = next
        .dead_letters()
        .into_iter()
        .map(|d| (text_of(&d.delivery), d.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("b".to_owned(), "malformed".to_owned()),
            ("a".to_owned(), "too_many_deliveries".to_owned())
        ]
    );
    assert_eq!(next.dead_letters()[0].detail, "bad");
    // The previous process is gone: its handles refuse, and change nothing.
    assert!(matches!(acker.ack(&[0, 1]).await, Err(LogError::Closed)));
    assert!(matches!(acker.commit().await, Err(LogError::Closed)));
    assert!(matches!(source.next_batch(10).await, Err(LogError::Closed)));
    assert!(matches!(
        log.append(vec![rec("k", "c")]).await,
        Err(LogError::Closed)
    ));
    assert!(next.committed(0).is_empty());
    assert_eq!((next.outstanding(0), next.peak_outstanding(0)), (0, 0));
}

fn text_of(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

#[tokio::test]
async fn the_sink_refuses_the_next_publishes_retryably_then_keeps_them_in_order() {
    let sink = MemorySink::new();
    let message = |key: &str| OutboundMessage {
        key: key.to_owned(),
        payload: key.as_bytes().to_vec(),
        properties: Default::default(),
    };
    sink.fail_next(2);
    for _ in 0..2 {
        let err = sink.publish(vec![message("a")]).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
    sink.publish(vec![message("a"), message("b")])
        .await
        .unwrap();
    sink.publish(vec![message("c")]).await.unwrap();
    let keys: Vec<String> = sink.published().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["a", "b", "c"]);
}
