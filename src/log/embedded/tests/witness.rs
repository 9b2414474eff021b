//! The store witness (`CommandLog::witness_store`): every commit of
//! consumed offsets first has the store made durable, records the head it
//! returns beside them, and is not made when the store cannot be.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[tokio::test]
async fn a_commit_makes_the_store_durable_first_and_none_is_made_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
    // The store's durable head; u64::MAX: the store cannot be made durable.
    let head = Arc::new(AtomicU64::new(7));
    let calls = Arc::new(AtomicU64::new(0));
    let (h, c) = (head.clone(), calls.clone());
    let defers = log.witness_store(Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        match h.load(Ordering::SeqCst) {
            u64::MAX => Err("injected: fdatasync failed".into()),
            head => Ok(head),
        }
    }));
    assert!(defers, "the embedded log makes the store durable itself");
    within(log.append((0..4).map(|i| rec("k", &format!("p{i}"))).collect()))
        .await
        .unwrap();
    let (mut source, acker) = log.open(0).await.unwrap();
    read_n(&mut source, 4).await;

    acker.ack(&[0, 1]).await.unwrap();
    acker.commit().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(log.committed_offset(0), Some(2));

    head.store(u64::MAX, Ordering::SeqCst);
    acker.ack(&[2]).await.unwrap();
    assert!(acker.commit().await.is_err());
    assert_eq!(log.committed_offset(0), Some(2), "not committed");

    head.store(9, Ordering::SeqCst);
    acker.commit().await.unwrap();
    assert_eq!(
        log.committed_offset(0),
        Some(3),
        "the acks were kept for the next"
    );
    drop((source, acker, log));

    let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
    assert_eq!(log.witnessed_store_head(), Some(9));
}
