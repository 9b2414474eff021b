//! Faults inside one process: a panicking aggregate is isolated and its
//! poison command dead-lettered alone; a failing store is retried (never
//! dead-lettered), readiness reflects it, and per-user order holds; a slow
//! store is waited for, not retried.

mod common;

use alpes_tracking::actors::PipelineConfig;
use alpes_tracking::app::{self, open_store, Running, ServiceConfig};
use common::faulty::FaultyStore;
use common::{command, request, wait_for, Resp};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

async fn start(dir: &std::path::Path, max_deliveries: u32) -> (Running, Arc<FaultyStore>) {
    let pipeline = PipelineConfig {
        max_deliveries,
        ..PipelineConfig::default()
    };
    start_with(dir, pipeline).await
}

/// A service on a `FaultyStore` (poison prefix `boom`) with short back-offs.
async fn start_with(
    dir: &std::path::Path,
    pipeline: PipelineConfig,
) -> (Running, Arc<FaultyStore>) {
    let config = ServiceConfig {
        partitions: Some(2),
        pipeline: PipelineConfig {
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..pipeline
        },
        ..ServiceConfig::local(dir)
    };
    let store = Arc::new(FaultyStore {
        panic_prefix: Some("boom"),
        ..FaultyStore::new(open_store(dir).unwrap())
    });
    let svc = app::start_with_store(config, Some(store.clone()))
        .await
        .unwrap();
    (svc, store)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn post(addr: SocketAddr, body: String) -> Resp {
    blocking(move || {
        request(
            addr,
            "POST",
            "/tracking/interactions",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST failed: {e}"))
    })
    .await
}

async fn get(addr: SocketAddr, path: String) -> Resp {
    blocking(move || request(addr, "GET", &path, &[], b"").unwrap()).await
}

async fn seqs_of(addr: SocketAddr, user: &str) -> Vec<(String, u64)> {
    let page = get(
        addr,
        format!("/tracking/users/{user}/interactions?limit=1000"),
    )
    .await
    .json();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["interaction_id"].as_str().unwrap().to_string(),
                i["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn rejected_total(addr: SocketAddr) -> u64 {
    let s = get(addr, "/tracking/stats/status".into()).await.json();
    s["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rejected"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_aggregate_hurts_only_its_poison_command() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _store) = start(dir.path(), 3).await;
    let addr = svc.addr;
    let ts = "2026-11-29T10:00:00Z";
    for id in ["x-1", "boom-2", "x-3"] {
        assert_eq!(
            post(addr, command(Some(id), "x", "click", "c", ts))
                .await
                .status,
            202
        );
    }
    for i in 0..5 {
        assert_eq!(
            post(addr, command(Some(&format!("y-{i}")), "y", "like", "c", ts))
                .await
                .status,
            202
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let x = seqs_of(addr, "x").await;
        let y = seqs_of(addr, "y").await;
        if x.len() == 2 && y.len() == 5 && rejected_total(addr).await == 1 {
            assert_eq!(
                x,
                vec![("x-1".to_string(), 1), ("x-3".to_string(), 2)],
                "order kept, poison skipped"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "x={x:?} y={y:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(addr, "/tracking/interactions/boom-2".into())
            .await
            .status,
        404
    );
    let metrics = get(addr, "/metrics".into()).await.body;
    assert!(
        metrics.contains("tracking_commands_dead_lettered_total{reason=\"too_many_deliveries\"}"),
        "{metrics}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_is_retried_in_order_and_never_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, store) = start(dir.path(), 2).await;
    let addr = svc.addr;
    wait_for_ready(addr, 200).await;
    store.down.store(true, Ordering::SeqCst);
    for i in 0..20 {
        let r = post(
            addr,
            command(
                Some(&format!("t-{i}")),
                "t",
                "view",
                "c",
                "2026-11-29T10:00:00Z",
            ),
        )
        .await;
        assert_eq!(
            r.status, 202,
            "the log still accepts while the store is down"
        );
    }
    wait_for_ready(addr, 503).await;
    let ready = get(addr, "/tracking/ready".into()).await.json();
    assert_eq!(ready["status"], "store unavailable");
    assert!(seqs_of(addr, "t").await.is_empty());
    store.down.store(false, Ordering::SeqCst);
    wait_for_ready(addr, 200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = seqs_of(addr, "t").await;
        if t.len() == 20 {
            let expected: Vec<(String, u64)> =
                (0..20).map(|i| (format!("t-{i}"), i as u64 + 1)).collect();
            assert_eq!(t, expected, "stored in log order with gap-free seqs");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} persisted",
            t.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rejected_total(addr).await,
        0,
        "a transient failure never dead-letters"
    );
    svc.stop().await.unwrap();
}

async fn wait_for_ready(addr: SocketAddr, status: u16) {
    blocking(move || {
        wait_for(
            &format!("readiness {status}"),
            Duration::from_secs(20),
            || {
                (request(addr, "GET", "/tracking/ready", &[], b"")
                    .ok()?
                    .status
                    == status)
                    .then_some(())
            },
        )
    })
    .await
}

/// A command whose event is already in the store (appended by another
/// writer while the user's aggregate was live, or by a write that crashed
/// before its acknowledgement) is a duplicate: the store refuses the
/// aggregate's group (its id is taken), the aggregate looks the ids up,
/// decides it a duplicate and nothing is appended again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_found_in_the_store_is_looked_up_not_appended_again() {
    use alpes_tracking::domain::{
        InteractionTracked, InteractionType, Target, EVENT_SCHEMA_VERSION,
    };
    use alpes_tracking::store::{AppendGroup, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let (svc, store) = start(dir.path(), 5).await;
    let user = "u-moved";
    let body = |id: &str| command(Some(id), user, "click", "c-1", "2026-11-29T10:00:00Z");
    let journal_len = || async { store.inner.user_events(user, 0, 10).await.unwrap().len() };

    assert_eq!(post(svc.addr, body("m-1")).await.status, 202);
    let addr = svc.addr;
    blocking(move || {
        wait_for("m-1 persisted", Duration::from_secs(10), || {
            (!common::user_events(addr, user).is_empty()).then_some(())
        })
    })
    .await;
    let lookups = store.lookups.load(Ordering::SeqCst);

    // Another writer appends the user's next event, then its command
    // reaches this worker (whose aggregate served the user a moment ago).
    let event = InteractionTracked {
        schema_version: EVENT_SCHEMA_VERSION,
        interaction_id: "m-2".into(),
        user_id: user.into(),
        seq: 2,
        interaction_type: InteractionType::Click,
        // The content `command` gives m-2: the same command, decided
        // elsewhere (a different content would be refused at ingest, 409).
        target: Target {
            id: format!("post-{}", user.len()),
            kind: "post".into(),
        },
        campaign_id: Some("c-1".into()),
        occurred_at: "2026-11-29T10:00:00Z".parse().unwrap(),
        affiliate_id: Some("a-7".into()),
        correlation_id: None,
        recorded_at: None,
    };
    let batch = WriteBatch {
        groups: vec![AppendGroup {
            user_id: user.into(),
            expected_last_seq: 1,
            numbering: Default::default(),
            events: vec![event],
            meta: Vec::new(),
        }],
        ..Default::default()
    };
    store.inner.write(Arc::new(batch)).await.unwrap();
    assert_eq!(post(svc.addr, body("m-2")).await.status, 202);

    let counted = Arc::clone(&store);
    blocking(move || {
        wait_for(
            "the aggregate looking the refused ids up",
            Duration::from_secs(10),
            || (counted.lookups.load(Ordering::SeqCst) != lookups).then_some(()),
        )
    })
    .await;
    assert_eq!(
        journal_len().await,
        2,
        "the duplicate was not appended again"
    );
    svc.stop().await.unwrap();
}

/// A store slower than the backlog in front of it: 18 users' first
/// commands, one group per commit (`max_write_batch` 1), each commit
/// 700 ms, so the last ones wait about 12 s behind the others. They are
/// waited for, not timed out and retried: one commit per user (a retry
/// would write the group again) and every user gets seq 1. (The retry
/// counters are process-wide, shared with the other tests here, so the
/// store's count of commits tells.) A timeout under such a backlog would
/// be a retry and a write more for a store already behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_is_waited_for_not_retried() {
    const USERS: usize = 18;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = PipelineConfig {
        max_write_batch: 1,
        ..PipelineConfig::default()
    };
    let (svc, store) = start_with(dir.path(), pipeline).await;
    let addr = svc.addr;
    wait_for_ready(addr, 200).await;
    store.write_delay_ms.store(700, Ordering::SeqCst);
    let writes = store.writes.load(Ordering::SeqCst);
    let users: Vec<String> = (0..USERS).map(|i| format!("slow-{i}")).collect();
    let started = tokio::time::Instant::now();
    for u in &users {
        let body = command(
            Some(&format!("{u}-1")),
            u,
            "click",
            "c",
            "2026-11-29T10:00:00Z",
        );
        assert_eq!(post(addr, body).await.status, 202);
    }
    let deadline = started + Duration::from_secs(60);
    for u in &users {
        loop {
            let seqs = seqs_of(addr, u).await;
            if !seqs.is_empty() {
                assert_eq!(seqs, vec![(format!("{u}-1"), 1)], "{u}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{u} not persisted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "the backlog must outlast the old 10 s limit for this test to mean anything ({:?})",
        started.elapsed()
    );
    assert_eq!(
        store.writes.load(Ordering::SeqCst) - writes,
        USERS as u32,
        "one commit per user: no command was retried"
    );
    store.write_delay_ms.store(0, Ordering::SeqCst);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_needs_a_restart_fails_liveness_and_refuses_posts() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, store) = start(dir.path(), 2).await;
    let addr = svc.addr;
    wait_for_ready(addr, 200).await;
    // Given a store that will refuse every write until the process restarts
    store.broken.store(true, Ordering::SeqCst);
    // Then liveness fails (an orchestrator restarts the process), readiness
    // too, and a POST is refused instead of accepted for nobody to persist
    let health = get(addr, "/tracking/health".into()).await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["status"], "restart needed");
    let ready = get(addr, "/tracking/ready".into()).await;
    assert_eq!(ready.status, 503);
    let r = post(
        addr,
        command(Some("nr-1"), "nr", "view", "c", "2026-11-29T10:00:00Z"),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "unavailable");
    svc.stop().await.ok();
}
