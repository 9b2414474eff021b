//! The ScyllaDB store against a real CQL server (Apache Cassandra 5 in CI:
//! `compose/native/cassandra.sh up`, then `SCYLLA_NODES=127.0.0.1:9042`).
//! `#[ignore]`d in a plain `cargo test`; `.ci/run` runs them.
//!
//! The shared contract suite, then what only a multi-writer store must
//! survive: a crash between the journal append and the projections, a lost
//! stats row, two workers racing on one user, journal buckets.

use super::{schema, session, write, ScyllaConfig, ScyllaStore};
use crate::domain::InteractionType::{Click, Like, View};
use crate::store::contract::{
    appended, group, groups, own_records, recount, snapshot, write as write_batch, Fx,
};
use crate::store::{AppendConflict, EventStore, GroupOutcome, WriteBatch};
use std::sync::Arc;

fn config() -> ScyllaConfig {
    let nodes = std::env::var("SCYLLA_NODES")
        .expect("SCYLLA_NODES must name a CQL server (compose/native/cassandra.sh up)");
    let ks = std::env::var("SCYLLA_TEST_KEYSPACE").unwrap_or_else(|_| "tracking_test".into());
    let mut cfg = ScyllaConfig::new(&nodes, &ks);
    cfg.consistency = super::parse_consistency(
        &std::env::var("SCYLLA_CONSISTENCY").unwrap_or_else(|_| "one".into()),
    )
    .unwrap();
    cfg.stats_cache_ttl = std::time::Duration::ZERO; // tests read their own writes
    cfg
}

/// A fresh keyspace once per test process (tests run in parallel; stats
/// are compared per day, so data of earlier runs must not linger).
async fn ensure_schema(cfg: &ScyllaConfig) {
    static APPLIED: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);
    let mut done = APPLIED.lock().await;
    if !*done {
        let s = session(cfg).await.unwrap();
        let drop = format!("DROP KEYSPACE IF EXISTS {}", cfg.keyspace);
        s.query_unpaged(drop, ()).await.unwrap();
        schema::apply(&s, &cfg.keyspace, "SimpleStrategy:1", &mut |_| {})
            .await
            .unwrap();
        *done = true;
    }
}

pub(crate) async fn store() -> ScyllaStore {
    let cfg = config();
    ensure_schema(&cfg).await;
    ScyllaStore::connect(&cfg).await.unwrap()
}

crate::store::contract::store_contract_tests!(ignored common: async {
    (Arc::new(store().await) as Arc<dyn EventStore>, ())
});

/// Appends one group of `user`'s events after `after`.
async fn append(
    s: &dyn EventStore,
    user: &str,
    after: u64,
    events: Vec<crate::domain::InteractionTracked>,
) -> crate::store::WriteOutcome {
    write_batch(s, groups(vec![group(user, after, events)])).await
}

/// Recount of this test's records equals the projections.
async fn assert_exact(s: &dyn EventStore, fx: &Fx, users: &[String]) {
    let own = own_records(s, fx, 0).await;
    assert_eq!(snapshot(s, fx, users).await, recount(&own, users));
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_crashed_append_is_completed_when_the_user_loads() {
    let s = store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let evs = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View), fx.ev(&u, 3, Click)];
    // The journal append alone, as if the worker died right after it.
    let appended = write::append_journal(&s, &group(&u, 0, evs.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(appended.len(), 3);
    assert_eq!(s.interaction(&evs[0].interaction_id).await.unwrap(), None);
    assert_eq!(s.user_stats(&u).await.unwrap(), None);

    // Loading the user (what an aggregate does first) completes it.
    assert_eq!(s.last_seq(&u).await.unwrap(), 3);
    let owners = s
        .interaction_owners(&[evs[0].interaction_id.clone()])
        .await
        .unwrap();
    assert_eq!(owners, vec![Some(u.clone())]);
    assert_exact(&s, &fx, std::slice::from_ref(&u)).await;
    // And loading again changes nothing.
    assert_eq!(s.last_seq(&u).await.unwrap(), 3);
    assert_exact(&s, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_lost_stats_row_is_recomputed_without_double_counting() {
    let s = store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    append(&s, &u, 0, vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, Like)]).await;
    // A crash after the contribution rows but before the stats row: the
    // rows already count events the stats row does not.
    let crashing = store().await;
    crashing
        .crash_before_stats
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let batch = groups(vec![group(
        &u,
        2,
        vec![fx.ev(&u, 3, Click), fx.ev(&u, 4, Click)],
    )]);
    assert!(crashing.write(batch.into()).await.is_err());
    assert_eq!(s.user_stats(&u).await.unwrap().unwrap().last_seq, 2);
    assert_eq!(s.last_seq(&u).await.unwrap(), 4);
    assert_exact(&s, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_stale_worker_conflicts_and_a_late_replay_changes_nothing() {
    let (a, b) = (store().await, store().await); // two workers' sessions
    let fx = Fx::new();
    let u = fx.name("u");
    let first = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)];
    append(&a, &u, 0, first.clone()).await;
    // B still believes the user has no event.
    let out = append(&b, &u, 0, vec![fx.ev(&u, 1, Like)]).await;
    assert_eq!(
        out.groups[0],
        GroupOutcome::Conflict(AppendConflict::SeqMismatch {
            expected: 0,
            actual: 2
        })
    );
    assert_eq!(b.last_seq(&u).await.unwrap(), 2);
    append(&b, &u, 2, vec![fx.ev(&u, 3, Like)]).await;
    // A's projection step arriving late (a slow or retried request).
    let stale = a.user_events(&u, 0, 2).await.unwrap();
    super::project::project_after_append(&a, &u, 0, stale[..2].to_vec())
        .await
        .unwrap();
    // An expected seq that is ahead of the journal is refused too.
    let ahead = append(&a, &u, 5, vec![fx.ev(&u, 6, Like)]).await;
    assert!(matches!(ahead.groups[0], GroupOutcome::Conflict(_)));
    assert_exact(&a, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn two_workers_racing_on_one_user_write_each_event_once() {
    let fx = Arc::new(Fx::new());
    let u = fx.name("u");
    let per_worker = 15u64;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (fx, u) = (fx.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let s = store().await;
            let mut written = 0;
            while written < per_worker {
                let last = s.last_seq(&u).await.unwrap();
                let batch = groups(vec![group(&u, last, vec![fx.ev(&u, last + 1, Click)])]);
                if let GroupOutcome::Appended { .. } = write_batch(&s, batch).await.groups[0] {
                    written += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = store().await;
    let events = s.user_events(&u, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=2 * per_worker).collect::<Vec<_>>());
    assert_exact(&s, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn groups_cross_journal_buckets() {
    let s = store().await.with_bucket_size(4);
    let fx = Fx::new();
    let u = fx.name("u");
    let evs: Vec<_> = (1..=10).map(|q| fx.ev(&u, q, View)).collect();
    let out = append(&s, &u, 0, evs.clone()).await;
    let p = appended(&out.groups[0]);
    append(&s, &u, 10, vec![fx.ev(&u, 11, Click), fx.ev(&u, 12, Click)]).await;
    assert_eq!(s.last_seq(&u).await.unwrap(), 12);
    let fresh = store().await.with_bucket_size(4); // nothing cached
    assert_eq!(fresh.last_seq(&u).await.unwrap(), 12);
    let page = fresh.user_events(&u, 2, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.event.seq).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(page[0].pos, p + 2);
    assert_eq!(fresh.user_events(&u, 0, 100).await.unwrap().len(), 12);
    assert_exact(&fresh, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn rebuild_recomputes_a_users_rows() {
    let s = store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    write_batch(
        &s,
        WriteBatch {
            groups: vec![group(&u, 0, vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)])],
            rejections: vec![],
        },
    )
    .await;
    // Damage a contribution row, then rebuild the user.
    s.session
        .query_unpaged(
            // At the timestamp of the last incremental write (2 * seq 2),
            // as a bug would have written it.
            format!("UPDATE {}.daily_contrib USING TIMESTAMP 4 SET count = 40 WHERE day = ? AND interaction_type = 'click' AND campaign = ? AND shard = ? AND user_id = ?", config().keyspace),
            (super::day_num(fx.ev(&u, 1, Click).occurred_at.date_naive()), fx.name("c1"), super::shard(&u), u.as_str()),
        )
        .await
        .unwrap();
    assert_ne!(
        snapshot(&s, &fx, std::slice::from_ref(&u)).await,
        recount(&own_records(&s, &fx, 0).await, std::slice::from_ref(&u))
    );
    s.rebuild_user(&u).await.unwrap();
    assert_exact(&s, &fx, &[u]).await;
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn schema_apply_is_idempotent_and_refuses_a_newer_schema() {
    let mut cfg = config();
    cfg.keyspace = format!("{}_schema", cfg.keyspace);
    let s = session(&cfg).await.unwrap();
    let ks = cfg.keyspace.clone();
    s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .unwrap();
    assert!(matches!(
        schema::check(&s, &ks).await,
        Err(schema::SchemaError::Older { found: 0, .. })
    ));
    let applied = schema::apply(&s, &ks, "SimpleStrategy:1", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(applied, vec!["001_tracking"]);
    assert!(schema::apply(&s, &ks, "SimpleStrategy:1", &mut |_| {})
        .await
        .unwrap()
        .is_empty());
    schema::check(&s, &ks).await.unwrap();
    s.query_unpaged(
        format!("INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)"),
        (),
    )
    .await
    .unwrap();
    assert!(matches!(
        schema::check(&s, &ks).await,
        Err(schema::SchemaError::Newer { found: 99, .. })
    ));
    assert!(ScyllaStore::connect(&cfg).await.is_err());
    s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .unwrap();
}

async fn outbox_store() -> ScyllaStore {
    let mut cfg = config();
    cfg.outbox = true;
    ensure_schema(&cfg).await;
    ScyllaStore::connect(&cfg).await.unwrap()
}

/// This user's unpublished seqs, as the outbox sweep sees them.
async fn unpublished_seqs(s: &ScyllaStore, user: &str) -> Vec<u64> {
    let all = s
        .unpublished(std::time::Duration::ZERO, 100_000)
        .await
        .unwrap();
    all.iter()
        .filter(|e| e.event.user_id == user)
        .map(|e| e.event.seq)
        .collect()
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn the_outbox_keeps_commits_until_marked_published_and_newer_ones_survive_old_marks() {
    let s = outbox_store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    append(&s, &u, 0, vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)]).await;
    assert_eq!(unpublished_seqs(&s, &u).await, vec![1, 2]);
    s.mark_published(&[(u.clone(), 2)]).await.unwrap();
    assert!(unpublished_seqs(&s, &u).await.is_empty());
    append(&s, &u, 2, vec![fx.ev(&u, 3, Like)]).await;
    // A late mark of an older seq removes nothing newer.
    s.mark_published(&[(u.clone(), 2)]).await.unwrap();
    assert_eq!(unpublished_seqs(&s, &u).await, vec![3]);
    s.mark_published(&[(u.clone(), 3)]).await.unwrap();
    assert!(unpublished_seqs(&s, &u).await.is_empty());
    // Without the outbox (no Pulsar), nothing is recorded.
    let plain = store().await;
    let v = fx.name("v");
    append(&plain, &v, 0, vec![fx.ev(&v, 1, Click)]).await;
    assert!(unpublished_seqs(&s, &v).await.is_empty());
}

/// Records what the publisher sends.
#[derive(Default)]
struct RecordingSink(std::sync::Mutex<Vec<crate::log::OutboundMessage>>);

#[async_trait::async_trait]
impl crate::log::EventSink for RecordingSink {
    async fn publish(
        &self,
        messages: Vec<crate::log::OutboundMessage>,
    ) -> Result<(), crate::log::LogError> {
        self.0.lock().unwrap().extend(messages);
        Ok(())
    }
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn the_publisher_sweeps_commits_a_crash_left_unpublished() {
    use crate::actors::publisher::{EventPublisher, PublisherArgs};
    let s: Arc<dyn EventStore> = Arc::new(outbox_store().await);
    let fx = Fx::new();
    let u = fx.name("u");
    // Committed, but the worker "died" before publishing: the publisher
    // never got these events from a writer.
    let evs = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)];
    append(&*s, &u, 0, evs.clone()).await;
    let sink = Arc::new(RecordingSink::default());
    let args = PublisherArgs {
        store: s.clone(),
        sink: sink.clone(),
        sweep_every: std::time::Duration::from_millis(200),
        sweep_grace: std::time::Duration::ZERO,
    };
    let (actor, handle) = ractor::Actor::spawn(None, EventPublisher, args)
        .await
        .unwrap();
    let ids: Vec<String> = evs.iter().map(|e| e.interaction_id.clone()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let sent: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.key == u)
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
            .filter_map(|v| v["interaction_id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().all(|id| sent.contains(id)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not republished: {sent:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Marked published once the broker confirmed them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut left = s
        .unpublished(std::time::Duration::ZERO, 100_000)
        .await
        .unwrap();
    while left.iter().any(|e| e.event.user_id == u) {
        assert!(std::time::Instant::now() < deadline, "still unpublished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = s
            .unpublished(std::time::Duration::ZERO, 100_000)
            .await
            .unwrap();
    }
    actor.stop(None);
    handle.await.unwrap();
}
