//! Tests of the embedded log: order, partitioning, acks and commits,
//! closing, concurrent appends and refused input (crash and recovery in
//! [`recovery`]).

use super::segment::{encode_frame, list_segments, segment_path};
use super::*;
use crate::log::{Delivery, LogError, NewRecord};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;
use tokio::time::timeout;

mod damage;
mod recovery;
mod tail;
mod witness;

/// The command-log contract suite on an embedded log in a temporary directory.
mod contract {
    use super::*;
    use crate::log::contract::{log_contract_tests, Subject, PARTITIONS};

    /// Small enough for the oversize case to be cheap.
    const MAX_RECORD_BYTES: usize = 4096;

    fn options() -> EmbeddedLogOptions {
        EmbeddedLogOptions {
            max_record_bytes: MAX_RECORD_BYTES,
            ..Default::default()
        }
    }

    async fn subject() -> Subject {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let log = EmbeddedLog::open_with(&path, PARTITIONS, options())
            .await
            .unwrap();
        Subject::new(
            log,
            Some(MAX_RECORD_BYTES),
            move |old| {
                // The last handle goes first: it holds the directory lock.
                drop(old);
                let path = path.clone();
                async move {
                    let log: Arc<dyn CommandLog> =
                        EmbeddedLog::open_with(&path, PARTITIONS, options())
                            .await
                            .unwrap();
                    log
                }
            },
            dir,
        )
    }

    log_contract_tests!(common: subject());
    log_contract_tests!(ignored counting (
        "the embedded log's redelivery_count is 1 for a record delivered before in this \
         process or before its last commit, else 0: a lower bound (see its docs)"
    ): subject());
}

async fn within<F: Future>(f: F) -> F::Output {
    timeout(Duration::from_secs(30), f)
        .await
        .expect("timed out")
}

fn rec(key: &str, payload: &str) -> NewRecord {
    NewRecord {
        key: key.to_owned(),
        payload: payload.as_bytes().to_vec(),
        properties: HashMap::from([("name".to_owned(), "track".to_owned())]),
    }
}

async fn read_n(source: &mut Box<dyn PartitionSource>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(
            within(source.next_batch(n - out.len()))
                .await
                .expect("next_batch"),
        );
    }
    out
}

/// Nothing more is delivered (within a short grace period).
async fn assert_idle(source: &mut Box<dyn PartitionSource>) {
    let more = timeout(Duration::from_millis(100), source.next_batch(10)).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");
}

fn ids(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.id).collect()
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

#[tokio::test]
async fn append_then_read_back_in_order_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 4).await.unwrap();
    let records: Vec<NewRecord> = (0..200)
        .map(|i| rec(&format!("user-{}", i % 17), &format!("p{i}")))
        .collect();
    let appended = within(log.append(records.clone())).await.unwrap();
    let more = within(log.append(records.clone())).await.unwrap();
    let mut expected: Vec<Vec<(u64, String)>> = vec![Vec::new(); 4];
    for (r, a) in records
        .iter()
        .chain(&records)
        .zip(appended.iter().chain(&more))
    {
        assert_eq!(a.partition, partition_for(&r.key, 4));
        expected[a.partition as usize]
            .push((a.offset, String::from_utf8_lossy(&r.payload).into_owned()));
    }
    for (p, exp) in expected.iter().enumerate() {
        assert!(!exp.is_empty(), "17 keys should reach every partition");
        assert_eq!(
            exp.iter().map(|e| e.0).collect::<Vec<_>>(),
            (0..exp.len() as u64).collect::<Vec<_>>()
        );
        let (mut source, _acker) = log.open(p as u32).await.unwrap();
        let got = read_n(&mut source, exp.len()).await;
        assert_eq!(
            got.iter().map(|d| (d.id, text(d))).collect::<Vec<_>>(),
            *exp
        );
        for d in &got {
            assert_eq!(d.partition, p as u32);
            assert_eq!(d.identity, format!("embedded:{p}:{}", d.id));
            assert_eq!(partition_for(d.key.as_deref().unwrap(), 4), p as u32);
            assert_eq!(d.properties.get("name").map(String::as_str), Some("track"));
            assert_eq!(d.redelivery_count, 0);
            assert!(d.published_at_ms > 1_600_000_000_000);
        }
        assert_idle(&mut source).await;
    }
    within(log.close()).await.unwrap();
}

#[test]
fn partition_for_is_stable_and_spreads() {
    // FNV-1a 64 reference values: "" = cbf29ce484222325, "a" = af63dc4c8601ec8c,
    // "foobar" = 85944171f73967e8.
    assert_eq!(partition_for("foobar", 16), 8);
    assert_eq!(
        partition_for("", 1000),
        (0xcbf2_9ce4_8422_2325_u64 % 1000) as u32
    );
    assert_eq!(
        partition_for("a", u32::MAX),
        (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
    );
    assert_eq!(partition_for("anything", 1), 0);
    assert_eq!(partition_for("anything", 0), 0);
    let mut counts = [0u32; 8];
    for i in 0..8000 {
        counts[partition_for(&format!("user-{i}"), 8) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
}

#[tokio::test]
async fn out_of_order_acks_commit_only_the_prefix_and_reopen_redelivers_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
    let records = (0..10).map(|i| rec("k", &format!("p{i}"))).collect();
    within(log.append(records)).await.unwrap();
    let (mut source, acker) = log.open(0).await.unwrap();
    assert_eq!(
        ids(&read_n(&mut source, 10).await),
        (0..10).collect::<Vec<_>>()
    );

    acker.ack(&[1, 3, 4, 7]).await.unwrap();
    acker.commit().await.unwrap();
    assert_eq!(log.committed_offset(0), Some(0));
    acker.ack(&[0]).await.unwrap();
    acker.commit().await.unwrap();
    assert_eq!(log.committed_offset(0), Some(2));
    acker.ack(&[0, 42]).await.unwrap(); // a duplicate and an unknown id: ignored
    acker.commit().await.unwrap();
    assert_eq!(log.committed_offset(0), Some(2));

    // A consumer restart in the same process.
    drop(source);
    let (mut source, _) = log.open(0).await.unwrap();
    let again = read_n(&mut source, 5).await;
    assert_eq!(ids(&again), [2, 5, 6, 8, 9]);
    assert!(again.iter().all(|d| d.redelivery_count == 1));
    assert_idle(&mut source).await;

    // A crash: the committed acks decide.
    drop((source, acker, log));
    let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
    let (mut source, acker) = log.open(0).await.unwrap();
    let again = read_n(&mut source, 5).await;
    assert_eq!(ids(&again), [2, 5, 6, 8, 9]);
    assert_eq!(
        again.iter().map(text).collect::<Vec<_>>(),
        ["p2", "p5", "p6", "p8", "p9"]
    );
    assert!(again.iter().all(|d| d.redelivery_count == 1));
    assert_idle(&mut source).await;
    acker.ack(&[9, 8, 6, 5, 2]).await.unwrap();
    within(log.close()).await.unwrap();
    assert_eq!(log.committed_offset(0), Some(10));
    drop((source, acker, log));

    let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
    let (mut source, _) = log.open(0).await.unwrap();
    assert_idle(&mut source).await;
    let at = within(log.append(vec![rec("k", "p10")])).await.unwrap();
    assert_eq!(at[0].offset, 10);
    let got = read_n(&mut source, 1).await;
    assert_eq!((got[0].id, got[0].redelivery_count), (10, 0));
}

#[tokio::test]
async fn close_wakes_readers_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 2).await.unwrap();
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| partition_for(k, 2) == 0)
        .unwrap();
    within(log.append(vec![rec(&key, "a"), rec(&key, "b"), rec(&key, "c")]))
        .await
        .unwrap();
    let (mut source, acker) = log.open(0).await.unwrap();
    assert_eq!(read_n(&mut source, 3).await.len(), 3);
    acker.ack(&[0, 1]).await.unwrap();
    // A cancelled wait loses nothing.
    assert!(timeout(Duration::from_millis(20), source.next_batch(10))
        .await
        .is_err());
    let waiter = tokio::spawn(async move { source.next_batch(10).await });
    // Concurrent appends (to the other partition) either land or fail Closed.
    let appenders: Vec<_> = (0..)
        .map(|i| format!("c{i}"))
        .filter(|k| partition_for(k, 2) == 1)
        .take(8)
        .map(|k| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![rec(&k, "late")]).await })
        })
        .collect();
    tokio::task::yield_now().await;
    within(log.close()).await.unwrap();
    assert!(matches!(
        within(waiter).await.unwrap(),
        Err(LogError::Closed)
    ));
    assert!(matches!(
        log.append(vec![rec(&key, "d")]).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(log.open(0).await, Err(LogError::Closed)));
    assert_eq!(log.committed_offset(0), Some(2), "close commits the acks");
    within(log.close()).await.unwrap(); // idempotent
    let mut confirmed = Vec::new();
    for task in appenders {
        match within(task).await.unwrap() {
            Ok(at) => confirmed.push(at[0]),
            Err(LogError::Closed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    drop(log);

    let log = EmbeddedLog::open(dir.path(), 2).await.unwrap();
    let (mut source, _) = log.open(0).await.unwrap();
    assert_eq!(read_n(&mut source, 1).await[0].id, 2);
    for at in confirmed {
        assert!(
            at.offset < log.high_water_mark(at.partition).unwrap(),
            "confirmed {at:?} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_unique_dense_offsets() {
    const TASKS: usize = 16;
    const APPENDS: usize = 50;
    const PER_APPEND: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 4).await.unwrap();
    let key = |t: usize, j: usize, k: usize| format!("user-{t}-{}", (j * PER_APPEND + k) % 7);
    let mut expected = [0usize; 4];
    for t in 0..TASKS {
        for j in 0..APPENDS {
            for k in 0..PER_APPEND {
                expected[partition_for(&key(t, j, k), 4) as usize] += 1;
            }
        }
    }
    let mut readers = Vec::new();
    for (p, &n) in expected.iter().enumerate() {
        let (mut source, _) = log.open(p as u32).await.unwrap();
        readers.push(tokio::spawn(async move { read_n(&mut source, n).await }));
    }
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0..APPENDS {
                    let records: Vec<NewRecord> = (0..PER_APPEND)
                        .map(|k| rec(&key(t, j, k), &format!("{t}/{j}/{k}")))
                        .collect();
                    let at = log.append(records.clone()).await.unwrap();
                    out.extend(records.into_iter().zip(at));
                }
                out
            })
        })
        .collect();
    let mut by_partition: Vec<BTreeMap<u64, String>> = vec![BTreeMap::new(); 4];
    for w in writers {
        for (r, at) in within(w).await.unwrap() {
            let payload = String::from_utf8_lossy(&r.payload).into_owned();
            assert!(
                by_partition[at.partition as usize]
                    .insert(at.offset, payload)
                    .is_none(),
                "duplicate {at:?}"
            );
        }
    }
    for (p, reader) in readers.into_iter().enumerate() {
        let offsets: Vec<u64> = by_partition[p].keys().copied().collect();
        assert_eq!(
            offsets,
            (0..expected[p] as u64).collect::<Vec<_>>(),
            "partition {p} not dense"
        );
        let got = within(reader).await.unwrap();
        let got: BTreeMap<u64, String> = got.iter().map(|d| (d.id, text(d))).collect();
        assert_eq!(got, by_partition[p]);
    }
    within(log.close()).await.unwrap();
}

/// The write groups found in partition 0's first segment, as the offsets
/// of their records, in order.
fn groups_on_disk(root: &std::path::Path) -> Vec<Vec<u64>> {
    let mut reader = super::segment::SegReader::open(&root.join("partition-0"), 0, 0).unwrap();
    let mut groups: Vec<(u64, Vec<u64>)> = Vec::new();
    while let Some(body) = reader.next_frame(u64::MAX).unwrap() {
        let record = super::segment::decode_body(&reader.buf[body]).unwrap();
        let group = record.group.expect("every frame records its group");
        match groups.last_mut() {
            Some((g, offsets)) if *g == group => offsets.push(record.offset),
            _ => groups.push((group, vec![record.offset])),
        }
    }
    groups.into_iter().map(|(_, offsets)| offsets).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_within_the_sync_interval_are_synced_as_one_group() {
    // Given a one-partition log that syncs at most every 300 ms, which has
    // just written one record
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedLogOptions {
        sync_interval: Duration::from_millis(300),
        ..Default::default()
    };
    let log = EmbeddedLog::open_with(dir.path(), 1, options)
        .await
        .unwrap();
    within(log.append(vec![rec("u", "first")])).await.unwrap();
    // When five appends arrive within the interval, one at a time
    let appends: Vec<_> = (0..5)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![rec("u", &format!("r{i}"))]).await })
        })
        .collect();
    for a in appends {
        within(a).await.unwrap().unwrap();
    }
    within(log.close()).await.unwrap();
    // Then they were written and synced together, in a second group
    assert_eq!(
        groups_on_disk(dir.path()),
        vec![vec![0], vec![1, 2, 3, 4, 5]]
    );
}

#[tokio::test]
async fn without_a_sync_interval_each_lone_append_is_its_own_group() {
    // Given a one-partition log without a sync interval
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedLogOptions {
        sync_interval: Duration::ZERO,
        ..Default::default()
    };
    let log = EmbeddedLog::open_with(dir.path(), 1, options)
        .await
        .unwrap();
    // When three appends are made one after the other
    for i in 0..3 {
        within(log.append(vec![rec("u", &format!("r{i}"))]))
            .await
            .unwrap();
    }
    within(log.close()).await.unwrap();
    // Then each was written and synced as it came
    assert_eq!(groups_on_disk(dir.path()), vec![vec![0], vec![1], vec![2]]);
}

#[tokio::test]
async fn refuses_another_partition_count_a_second_instance_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedLogOptions {
        max_record_bytes: 100,
        ..Default::default()
    };
    let log = EmbeddedLog::open_with(dir.path(), 4, options)
        .await
        .unwrap();
    assert!(matches!(
        EmbeddedLog::open(dir.path(), 4).await,
        Err(LogError::Unavailable(_))
    ));
    assert!(matches!(
        log.append(vec![rec("k", &"x".repeat(200))]).await,
        Err(LogError::TooLarge(_))
    ));
    assert!(matches!(
        log.open(4).await,
        Err(LogError::NoSuchPartition(4))
    ));
    assert!(within(log.append(Vec::new())).await.unwrap().is_empty());
    within(log.close()).await.unwrap();
    drop(log);
    match EmbeddedLog::open(dir.path(), 2).await {
        Err(LogError::Corrupt(msg)) => assert!(msg.contains("4 partitions"), "{msg}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert!(EmbeddedLog::open(dir.path(), 0).await.is_err());
    EmbeddedLog::open(dir.path(), 4).await.unwrap();
}

/// Rough throughput figure: `cargo test --release --lib embedded_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn embedded_throughput() {
    // (concurrent appenders, records per append): batched, then one by one.
    for (tasks, per_append) in [(32usize, 100usize), (1024, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), 8).await.unwrap();
        let appends = 32_000 / per_append / tasks * 10;
        let started = std::time::Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for j in 0..appends {
                        let records = (0..per_append)
                            .map(|k| rec(&format!("user-{t}-{k}"), &format!("{{\"n\":{j}}}")))
                            .collect();
                        log.append(records).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            within(h).await.unwrap();
        }
        let n = (tasks * appends * per_append) as f64;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{tasks} appenders x {per_append} records/append: {n} in {secs:.2}s = {:.0}/s",
            n / secs
        );
        within(log.close()).await.unwrap();
    }
}
