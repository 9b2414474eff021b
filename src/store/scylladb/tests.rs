//! The ScyllaDB store against a real CQL server (Apache Cassandra 5 in CI:
//! `compose/native/cassandra.sh up`, then `SCYLLA_NODES=127.0.0.1:9042`).
//! `#[ignore]`d in a plain `cargo test`; `.ci/run` runs them.
//!
//! The shared contract suite, then what a store without consensus must
//! survive: a commit cut short between the journal and the user's rows,
//! two workers deciding the same commands, a user's ids and keys beyond
//! its head, a follower left behind, a refold, the followers' lease.

use super::{schema, session, ScyllaConfig, ScyllaStore};
use crate::domain::decide::{decide, DailyKey, Input};
use crate::domain::InteractionType::{Click, Like, View};
use crate::domain::{CommandFormat, TrackInteraction};
use crate::store::contract::{own_records, recount, snapshot, write as write_batch, Fx};
use crate::store::{EventMeta, EventStore, Folding};
use std::sync::atomic::Ordering;
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
crate::store::contract::store_contract_tests!(ignored deterministic: async {
    (Arc::new(store().await) as Arc<dyn EventStore>, ())
});

/// The projections of this test's users equal the recount of its records.
async fn assert_exact(s: &dyn EventStore, fx: &Fx, users: &[String]) {
    fx.fold(s).await;
    let own = own_records(s, fx, 0).await;
    assert_eq!(snapshot(s, fx, users).await, recount(&own, users));
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_commit_cut_short_is_finished_by_its_redelivery() {
    let s = store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let batch = fx.groups(vec![fx.group(
        &u,
        0,
        vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)],
    )]);
    // The journal rows, then the worker dies before the user's rows.
    s.crash_after_log.store(true, Ordering::SeqCst);
    assert!(s.write(Arc::new(batch.clone())).await.is_err());
    s.crash_after_log.store(false, Ordering::SeqCst);
    // Not the user's yet: its commands come again and are decided again.
    assert_eq!(s.last_seq(&u).await.unwrap(), 0);
    assert!(s.user_events(&u, 0, 10).await.unwrap().is_empty());
    let view = s
        .view(&u, &[batch.groups[0].events[0].interaction_id.clone()], &[])
        .await;
    assert!(view.unwrap().own_ids.is_empty());
    // The redelivery decides the same and writes the same rows.
    write_batch(&s, batch).await;
    assert_eq!(s.last_seq(&u).await.unwrap(), 2);
    assert_exact(&s, &fx, std::slice::from_ref(&u)).await;
    assert_eq!(own_records(&s, &fx, 0).await.len(), 2);
}

fn command(fx: &Fx, user: &str, id: &str) -> TrackInteraction {
    let e = fx.ev(user, 0, Click);
    TrackInteraction {
        interaction_id: id.to_owned(),
        user_id: user.to_owned(),
        interaction_type: "click".into(),
        target: e.target,
        campaign_id: e.campaign_id,
        affiliate_id: None,
        occurred_at: e.occurred_at,
        correlation_id: None,
        format: CommandFormat::Canonical,
    }
}

/// One worker's decision and commit of `cmds` (as the aggregate does).
async fn decide_and_commit(s: &ScyllaStore, fx: &Fx, user: &str, cmds: &[TrackInteraction]) {
    let at = fx.ev(user, 0, Click).occurred_at + chrono::Duration::hours(1);
    let inputs: Vec<Input> = cmds
        .iter()
        .map(|c| Input {
            command: c,
            published_at: at,
        })
        .collect();
    let ids: Vec<String> = cmds.iter().map(|c| c.interaction_id.clone()).collect();
    let keys: Vec<DailyKey> = decide(user, &Default::default(), &inputs)
        .events
        .iter()
        .map(|e| DailyKey::of(&e.event))
        .collect();
    let view = s.view(user, &ids, &keys).await.unwrap();
    let d = decide(user, &view, &inputs);
    if d.events.is_empty() {
        return;
    }
    let group = crate::store::AppendGroup {
        user_id: user.to_owned(),
        expected_last_seq: view.last_seq,
        numbering: crate::store::Numbering::Expected,
        meta: d
            .events
            .iter()
            .map(|e| EventMeta {
                source: fx.source(&cmds[e.command].interaction_id),
                first_of_key: e.first_of_key,
            })
            .collect(),
        events: d.events.into_iter().map(|e| e.event).collect(),
    };
    write_batch(s, fx.groups(vec![group])).await;
}

/// Two workers hold one user's commands at once (a rebalance while the
/// first is slow, or paused): both decide from what is committed and
/// write the same rows; the user's seqs are 1..n, each command once.
#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn two_workers_deciding_the_same_commands_write_the_same_rows() {
    let (a, b) = (store().await, store().await);
    let fx = Fx::new();
    let u = fx.name("u");
    let cmds: Vec<TrackInteraction> = (0..6)
        .map(|i| command(&fx, &u, &fx.name(&format!("c{i}"))))
        .collect();
    // The first worker commits the first two; then both go on, the
    // second from the start (redelivered), the first late.
    decide_and_commit(&a, &fx, &u, &cmds[..2]).await;
    tokio::join!(
        decide_and_commit(&a, &fx, &u, &cmds[2..4]),
        decide_and_commit(&b, &fx, &u, &cmds[..4]),
    );
    decide_and_commit(&b, &fx, &u, &cmds[4..]).await;
    decide_and_commit(&a, &fx, &u, &cmds[2..4]).await;
    let events = a.user_events(&u, 0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>());
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.event.interaction_id.as_str())
        .collect();
    let want: Vec<&str> = cmds.iter().map(|c| c.interaction_id.as_str()).collect();
    assert_eq!(ids, want);
    assert_exact(&a, &fx, std::slice::from_ref(&u)).await;
}

/// A user with more events than its head keeps ids of, and keys on days
/// before its head's floor: the view finds them in the user's rows.
#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn ids_and_keys_beyond_the_head_are_found_in_the_users_rows() {
    let s = store().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let mut evs: Vec<_> = (1..=40).map(|q| fx.ev(&u, q, Click)).collect();
    evs[0].occurred_at -= chrono::Duration::days(30);
    let old_key = DailyKey::of(&evs[0]);
    write_batch(&s, fx.groups(vec![fx.group(&u, 0, evs.clone())])).await;
    let new_id = fx.name("new");
    let view = s
        .view(
            &u,
            &[
                evs[0].interaction_id.clone(),
                evs[39].interaction_id.clone(),
                new_id,
            ],
            std::slice::from_ref(&old_key),
        )
        .await
        .unwrap();
    assert_eq!(view.last_seq, 40);
    assert_eq!(
        view.own_ids,
        [
            evs[0].interaction_id.clone(),
            evs[39].interaction_id.clone()
        ]
        .into()
    );
    assert_eq!(view.known_keys, [old_key].into());
}

/// A follower that fell behind (paused, its lease lost) folds late: it
/// is told the checkpoint moved, and the statistics stay exact.
#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_follower_left_behind_changes_nothing() {
    let (s, late) = (store().await, store().await);
    let fx = Fx::new();
    let u = fx.name("u");
    write_batch(
        &s,
        fx.groups(vec![fx.group(
            &u,
            0,
            vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, Like)],
        )]),
    )
    .await;
    let p = fx.source("x").partition;
    let from = Folding::checkpoint(&late, p).await.unwrap();
    let records = late
        .read(
            p,
            from.position,
            crate::domain::position::Position::MAX,
            100,
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    fx.fold(&s).await; // the current follower
    assert!(late.fold(p, from, &records).await.is_err());
    assert_exact(&s, &fx, std::slice::from_ref(&u)).await;
}

/// `tracking rebuild`: the partition's statistics are dropped and folded
/// again from the start, to the same values.
#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn a_refold_recounts_from_the_start() {
    let s = store().await;
    let fx = Fx::new();
    let (u, v) = (fx.name("u"), fx.name("v"));
    write_batch(
        &s,
        fx.batch(
            vec![
                fx.group(&u, 0, vec![fx.ev(&u, 1, Click)]),
                fx.group(&v, 0, vec![fx.ev(&v, 1, View), fx.ev(&v, 2, View)]),
            ],
            vec![fx.rejection("r", fx.ev(&u, 0, Click).occurred_at)],
        ),
    )
    .await;
    let users = [u, v];
    assert_exact(&s, &fx, &users).await;
    let before = snapshot(&s, &fx, &users).await;
    let p = fx.source("x").partition;
    s.refold(p).await.unwrap();
    assert_eq!(Folding::checkpoint(&s, p).await.unwrap().folded, 0);
    assert_exact(&s, &fx, &users).await;
    assert_eq!(snapshot(&s, &fx, &users).await, before);
}

#[tokio::test]
#[ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"]
async fn one_follower_holds_a_partition_until_its_lease_expires() {
    let s = store().await;
    let p = Fx::new().source("x").partition;
    let ttl = std::time::Duration::from_millis(1500);
    assert!(s.lease(p, "a", ttl).await.unwrap());
    assert!(!s.lease(p, "b", ttl).await.unwrap());
    assert!(s.lease(p, "a", ttl).await.unwrap()); // renewed
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert!(s.lease(p, "b", ttl).await.unwrap());
    assert!(!s.lease(p, "a", ttl).await.unwrap());
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
    assert_eq!(applied, vec!["001_tracking", "002_write_behind"]);
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
