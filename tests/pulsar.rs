//! Pulsar mode against a real broker. Every test is `#[ignore]`d (plain
//! `cargo test` needs no broker); run them with
//!
//! ```sh
//! compose/native/pulsar.sh up --wipe && eval "$(compose/native/pulsar.sh env)"
//! cargo test --test pulsar -- --ignored --test-threads=1
//! ```
//!
//! Each test uses its own topics, so tests do not see each other's messages.

mod common;
#[path = "pulsar_support/mod.rs"]
mod support;

use alpes_tracking::app;
use alpes_tracking::domain::codec::BuildInteractionsInfo;
use alpes_tracking::log::CommandLog;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn two_workers_share_the_load_and_keep_per_user_order() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w1 = worker(d1.path(), &cmds, &events).await;
    let w2 = worker(d2.path(), &cmds, &events).await;
    let log = producer(&cmds, &events).await;
    let (users, per_user) = (40, 50);
    publish_users(&log, "u", users, per_user).await;

    eventually("every command persisted", WAIT, || async {
        let n = all_events(&*w1.store).await.len() + all_events(&*w2.store).await.len();
        (n == users * per_user).then_some(())
    })
    .await;
    let (mut on1, mut on2) = (0, 0);
    for u in 0..users {
        let user = format!("u{u}");
        let (e1, e2) = (
            user_events(&*w1.store, &user).await,
            user_events(&*w2.store, &user).await,
        );
        assert!(
            e1.is_empty() || e2.is_empty(),
            "{user} processed by both workers"
        );
        if e1.is_empty() {
            on2 += 1;
            assert_in_order(&user, &e2, per_user);
        } else {
            on1 += 1;
            assert_in_order(&user, &e1, per_user);
        }
    }
    assert!(on1 > 0 && on2 > 0, "load not shared: {on1} / {on2} users");
    log.close().await.unwrap();
    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn poison_messages_reach_the_dlq_and_good_ones_still_flow() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let client = client().await;
    let mut dlq = reader(&client, &format!("{NS}/{cmds}-DLQ")).await;
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &cmds, &events).await;
    let log = producer(&cmds, &events).await;
    let user = "u-p";
    let mut rule =
        serde_json::from_slice::<serde_json::Value>(&track(user, "bad", "t", OCCURRED)).unwrap();
    rule["interaction_type"] = "jump".into();
    let mut oversize = vec![b' '; 70 * 1024];
    oversize.extend_from_slice(b"{}");
    let batch = vec![
        record(user, track(user, "u-p-00000", "t", OCCURRED), &[]),
        record(user, b"{not json".to_vec(), &[("correlationId", "c-9")]),
        record(user, b"{}".to_vec(), &[("name", "DropTables")]),
        record(user, rule.to_string().into_bytes(), &[]),
        record(user, oversize, &[]),
        record(user, track(user, "u-p-00001", "t", OCCURRED), &[]),
    ];
    log.append(batch).await.unwrap();

    let got = receive(&mut dlq, 4, WAIT).await;
    let reasons: HashSet<&str> = got
        .iter()
        .map(|g| g.properties["reason"].as_str())
        .collect();
    let expected: HashSet<&str> = [
        "malformed",
        "unknown_command",
        "invalid_interaction_type",
        "oversize",
    ]
    .into();
    assert_eq!(reasons, expected, "{got:?}");
    for g in &got {
        assert_eq!(g.key.as_deref(), Some(user));
        assert!(g.properties["original_topic"].starts_with(&format!("{NS}/{cmds}-partition-")));
        assert!(!g.properties["original_message_id"].is_empty());
        assert_eq!(g.properties["redelivery_count"], "0");
    }
    let malformed = got
        .iter()
        .find(|g| g.properties["reason"] == "malformed")
        .unwrap();
    assert_eq!(malformed.payload, b"{not json", "the original payload");
    assert_eq!(
        malformed.properties["correlationId"], "c-9",
        "original properties kept"
    );
    let unknown = got
        .iter()
        .find(|g| g.properties["reason"] == "unknown_command")
        .unwrap();
    assert_eq!(unknown.properties["name"], "DropTables");
    // The dead letters are retained by the worker's durable subscription on
    // the DLQ topic (without one, Pulsar trims them at the next ledger
    // roll-over: found by loadtest/faults/broker-restart.sh).
    let stats = common::get(
        admin_addr(),
        &format!("/admin/v2/persistent/public/default/{cmds}-DLQ/stats"),
    )
    .json();
    assert_eq!(
        stats["subscriptions"]["dead-letters"]["msgBacklog"], 4,
        "{stats}"
    );

    let events = eventually("both good commands persisted", WAIT, || async {
        let e = user_events(&*w.store, user).await;
        (e.len() == 2).then_some(e)
    })
    .await;
    assert_in_order(user, &events, 2);
    log.close().await.unwrap();
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn transient_store_failures_are_retried_not_dead_lettered() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let client = client().await;
    let mut dlq = reader(&client, &format!("{NS}/{cmds}-DLQ")).await;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let flaky = std::sync::Arc::new(common::faulty::FaultyStore {
        failing_writes: std::sync::atomic::AtomicU32::new(8),
        ..common::faulty::FaultyStore::new(std::sync::Arc::new(
            alpes_tracking::store::embedded::EmbeddedStore::open(&store_dir).unwrap(),
        ))
    });
    let w = app::start_with_store(
        config(dir.path(), options(&cmds, &events)),
        Some(flaky.clone()),
    )
    .await
    .unwrap();
    let w = ready(w).await;
    let log = producer(&cmds, &events).await;
    publish_users(&log, "t", 4, 5).await;
    eventually("every command persisted despite failures", WAIT, || async {
        (all_events(&*w.store).await.len() == 20).then_some(())
    })
    .await;
    assert_eq!(
        flaky.failing_writes.load(Ordering::SeqCst),
        0,
        "failures were injected"
    );
    for u in 0..4 {
        let user = format!("t{u}");
        assert_in_order(&user, &user_events(&*w.store, &user).await, 5);
    }
    let dead = receive(&mut dlq, 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    log.close().await.unwrap();
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn events_topic_gets_each_event_and_build_interactions_info_its_answer() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let client = client().await;
    let mut out = reader(&client, &format!("{NS}/{events}")).await;
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &cmds, &events).await;
    let log = producer(&cmds, &events).await;
    let day = "2025-09-10T12:00:00Z";
    log.append(vec![
        record("a", track("a", "a-1", "post-saga", day), &[]),
        record("b", track("b", "b-1", "post-saga", day), &[]),
        record("c", track("c", "c-1", "post-saga", day), &[]),
        record("d", track("d", "d-1", "post-other", day), &[]),
    ])
    .await
    .unwrap();
    eventually("four events", WAIT, || async {
        (all_events(&*w.store).await.len() == 4).then_some(())
    })
    .await;
    let request = BuildInteractionsInfo {
        saga_id: "saga-1".into(),
        post_id: "post-saga".into(),
        start_date: chrono::NaiveDate::from_ymd_opt(2025, 9, 1).unwrap(),
        end_date: chrono::NaiveDate::from_ymd_opt(2025, 9, 30).unwrap(),
        correlation_id: None,
    };
    log.append(vec![record(
        "saga-1",
        saga(&request),
        &[
            ("name", "BuildInteractionsInfo"),
            ("correlationId", "corr-1"),
            ("sagaId", "saga-1"),
        ],
    )])
    .await
    .unwrap();

    let got = receive(&mut out, 5, WAIT).await;
    let (tracked, answers): (Vec<_>, Vec<_>) = got
        .iter()
        .partition(|g| g.properties.get("name").map(String::as_str) == Some("InteractionTracked"));
    let ids: HashMap<String, String> = tracked
        .iter()
        .map(|g| {
            (
                g.json()["interaction_id"].as_str().unwrap().to_string(),
                g.key.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 4, "{got:?}");
    for (id, key) in &ids {
        assert!(id.starts_with(key.as_str()), "keyed by user: {id} {key}");
    }
    assert!(tracked
        .iter()
        .all(|g| g.properties["schema_version"] == "2"));
    assert_eq!(answers.len(), 1, "{got:?}");
    let answer = answers[0];
    assert_eq!(answer.key.as_deref(), Some("saga-1"));
    assert_eq!(answer.properties["name"], "InteractionsInfoBuilt");
    assert_eq!(answer.properties["sagaId"], "saga-1");
    assert_eq!(answer.properties["correlationId"], "corr-1");
    let body = answer.json();
    assert_eq!(body["count"], 3);
    assert_eq!(body["interactions"].as_array().unwrap().len(), 3);
    eventually("the events cursor moved", WAIT, || async {
        (w.store.cursor("events-out").await.unwrap() >= 4).then_some(())
    })
    .await;
    log.close().await.unwrap();
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn graceful_shutdown_leaves_nothing_persisted_unacknowledged() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w1 = worker(d1.path(), &cmds, &events).await;
    let log = producer(&cmds, &events).await;
    let (users, per_user) = (50, 40);
    publish_users(&log, "g", users, per_user).await;
    eventually("some progress", WAIT, || async {
        (all_events(&*w1.store).await.len() >= 200).then_some(())
    })
    .await;
    let store1 = w1.store.clone();
    w1.stop().await.unwrap();
    let first: HashSet<String> = all_events(&*store1)
        .await
        .into_iter()
        .map(|e| e.into_event().interaction_id)
        .collect();
    drop(store1);

    // A new worker (fresh store) on the same subscription gets the rest,
    // and nothing the first one persisted.
    let w2 = worker(d2.path(), &cmds, &events).await;
    let second = eventually("the rest persisted", WAIT, || async {
        let ids: Vec<String> = all_events(&*w2.store)
            .await
            .into_iter()
            .map(|e| e.into_event().interaction_id)
            .collect();
        (first.len() + ids.len() >= users * per_user).then_some(ids)
    })
    .await;
    let redelivered: Vec<&String> = second.iter().filter(|id| first.contains(*id)).collect();
    assert!(
        redelivered.is_empty(),
        "{} persisted commands came back: {:?}",
        redelivered.len(),
        &redelivered[..redelivered.len().min(5)]
    );
    assert_eq!(first.len() + second.len(), users * per_user);
    log.close().await.unwrap();
    w2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up)"]
async fn worker_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w");
    let url = pulsar_url();
    let (topic, events_topic) = (format!("{NS}/{cmds}"), format!("{NS}/{events}"));
    let args = [
        "--pulsar-url",
        url.as_str(),
        "--topic-commands",
        topic.as_str(),
        "--topic-events",
        events_topic.as_str(),
    ];
    let mut worker = common::Worker::start(&data, &args);
    let (users, per_user) = (30, 100);
    let log = producer(&cmds, &events).await;
    let publishing = {
        let log = log.clone();
        tokio::spawn(async move { publish_users(&log, "k", users, per_user).await })
    };
    let addr = worker.addr;
    eventually("some events persisted", WAIT, || async move {
        (metric(addr, "tracking_events_persisted_total") >= 300.0).then_some(())
    })
    .await;
    worker.kill9();
    publishing.await.unwrap();
    let worker = common::Worker::start(&data, &args);
    let addr = worker.addr;
    for u in 0..users {
        let user = format!("k{u}");
        let ids = eventually("every command of the user persisted", WAIT, || {
            let user = user.clone();
            async move {
                let ids = http_user_ids(addr, &user);
                (ids.len() >= per_user).then_some(ids)
            }
        })
        .await;
        assert_eq!(ids.len(), per_user, "{user}: duplicates");
        for (i, (seq, id)) in ids.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "{user}: seq gap");
            assert_eq!(*id, format!("{user}-{i:05}"), "{user}: order");
        }
    }
    log.close().await.unwrap();
    drop(worker);
}

/// Last: restarts the broker (keeping its data) under a running worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar broker (compose/native/pulsar.sh up); restarts it"]
async fn zz_worker_survives_a_broker_restart() {
    let (cmds, events) = (unique("cmds"), unique("events"));
    create_partitioned(&cmds, 4);
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &cmds, &events).await;
    let log = producer(&cmds, &events).await;
    publish_users(&log, "r", 10, 10).await;
    eventually("the first half persisted", WAIT, || async {
        (all_events(&*w.store).await.len() == 100).then_some(())
    })
    .await;
    let reconnects_before = metric(w.addr, "tracking_pulsar_reconnects_total");

    tokio::task::spawn_blocking(|| broker(&["down"]))
        .await
        .unwrap();
    let health = w.health.clone();
    eventually("readiness 503 while the broker is away", WAIT, || {
        let health = health.clone();
        async move { (!health.is_ready()).then_some(()) }
    })
    .await;
    tokio::task::spawn_blocking(|| broker(&["up"]))
        .await
        .unwrap();

    // The producer side reconnects too: retry until the broker takes them.
    eventually("publishing again", WAIT, || async {
        let batch = (0..10)
            .map(|u| {
                let user = format!("r{u}");
                record(
                    &user,
                    track(&user, &format!("{user}-{:05}", 10), "post-1", OCCURRED),
                    &[],
                )
            })
            .collect();
        log.append(batch).await.ok()
    })
    .await;
    publish_users_from(&log, "r", 10, 11, 20).await;
    eventually("everything persisted after the restart", WAIT, || async {
        (all_events(&*w.store).await.len() == 200).then_some(())
    })
    .await;
    for u in 0..10 {
        let user = format!("r{u}");
        assert_in_order(&user, &user_events(&*w.store, &user).await, 20);
    }
    assert!(metric(w.addr, "tracking_pulsar_reconnects_total") > reconnects_before);
    let health = w.health.clone();
    eventually("ready again", WAIT, || {
        let health = health.clone();
        async move { health.is_ready().then_some(()) }
    })
    .await;
    log.close().await.unwrap();
    w.stop().await.unwrap();
}
