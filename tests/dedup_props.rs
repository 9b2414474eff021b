//! Property test of the whole in-process service through its embedded log:
//! any history of commands for a few users, in which interaction ids are
//! resent (the same record appended again, or the id with other content)
//! and store writes fail now and then (so the consumer redelivers the same
//! log records), leaves each user's journal equal to the deduplicated
//! history: the first occurrence of each id, in append order, with
//! sequence numbers 1..n and no gaps.

mod common;

use alpes_tracking::actors::PipelineConfig;
use alpes_tracking::app::{self, open_store, ServiceConfig};
use alpes_tracking::log::NewRecord;
use alpes_tracking::store::{EventStore, JournalRecord};
use common::faulty::FaultyStore;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 3;
const TYPES: [&str; 3] = ["click", "view", "like"];

#[derive(Debug, Clone)]
enum Step {
    /// A new command: user, interaction id (small, so ids repeat), type.
    Send(usize, usize, usize),
    /// The `n`-th earlier record (modulo their count) appended again.
    Resend(usize),
    /// Append what is pending as one call, then fail the next `k` writes.
    Flush(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..USERS, 0..5usize, 0..3usize).prop_map(|(u, i, t)| Step::Send(u, i, t)),
        2 => any::<usize>().prop_map(Step::Resend),
        2 => (0..3u32).prop_map(Step::Flush),
    ]
}

fn record(user: &str, id: &str, ty: &str) -> NewRecord {
    NewRecord {
        key: user.to_owned(),
        payload: common::command(Some(id), user, ty, "c-1", "2026-11-29T10:00:00Z").into_bytes(),
        properties: HashMap::new(),
    }
}

type Journal = BTreeMap<String, Vec<(String, String, u64)>>;

async fn journal(store: &dyn EventStore) -> Journal {
    let mut out: Journal = BTreeMap::new();
    store
        .visit_journal(&mut |r| {
            if let JournalRecord::Event(e) = r {
                let e = e.into_event();
                out.entry(e.user_id).or_default().push((
                    e.interaction_id,
                    e.interaction_type.as_str().to_owned(),
                    e.seq,
                ));
            }
        })
        .await
        .expect("journal");
    out
}

/// What was appended, and the journal it must produce.
#[derive(Default)]
struct History {
    /// (user, interaction id, type) of every record appended.
    sent: Vec<(String, String, String)>,
    expected: Journal,
    seen: HashSet<String>,
}

impl History {
    fn push(&mut self, pending: &mut Vec<NewRecord>, (user, id, ty): (String, String, String)) {
        pending.push(record(&user, &id, &ty));
        if self.seen.insert(id.clone()) {
            let events = self.expected.entry(user.clone()).or_default();
            let seq = events.len() as u64 + 1;
            events.push((id.clone(), ty.clone(), seq));
        }
        self.sent.push((user, id, ty));
    }
}

async fn run_case(steps: Vec<Step>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = ServiceConfig {
        partitions: Some(2),
        pipeline: PipelineConfig {
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_millis(40),
            commit_interval: Duration::from_millis(50),
            ..PipelineConfig::default()
        },
        ..common::service_config(dir.path())
    };
    let faulty = Arc::new(FaultyStore::new(
        open_store(dir.path()).map_err(|e| e.to_string())?,
    ));
    let svc = app::start_with_store(config, Some(faulty.clone()))
        .await
        .map_err(|e| e.to_string())?;

    // Append the history; remember the expected (deduplicated) journal.
    let mut h = History::default();
    let mut pending = Vec::new();
    for s in steps {
        match s {
            Step::Send(u, i, t) => {
                let msg = (format!("u{u}"), format!("u{u}-i{i}"), TYPES[t].to_owned());
                h.push(&mut pending, msg);
            }
            Step::Resend(n) if !h.sent.is_empty() => {
                let msg = h.sent[n % h.sent.len()].clone();
                h.push(&mut pending, msg);
            }
            Step::Resend(_) => {}
            Step::Flush(k) => {
                if !pending.is_empty() {
                    let records = std::mem::take(&mut pending);
                    svc.log.append(records).await.map_err(|e| e.to_string())?;
                }
                faulty.failing_writes.fetch_add(k, Ordering::SeqCst);
            }
        }
    }
    // A last, unique command per user: once it is in the journal, every
    // earlier one of that user was decided (one partition, in order).
    for u in 0..USERS {
        let msg = (format!("u{u}"), format!("u{u}-end"), "view".to_owned());
        h.push(&mut pending, msg);
    }
    svc.log.append(pending).await.map_err(|e| e.to_string())?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = journal(svc.store.as_ref()).await;
        let done = (0..USERS).all(|u| {
            got.get(&format!("u{u}"))
                .is_some_and(|evs| evs.iter().any(|(id, ..)| *id == format!("u{u}-end")))
        });
        if done {
            break got;
        }
        if Instant::now() > deadline {
            return Err(format!("not all users finished in 30 s: {got:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    svc.stop().await.map_err(|e| e.to_string())?;
    // Every injected failure was met (so records were redelivered).
    let left = faulty.failing_writes.load(Ordering::SeqCst);
    if left != 0 {
        return Err(format!("{left} injected write failures never happened"));
    }
    if got != h.expected {
        let expected = &h.expected;
        return Err(format!("journal {got:?}\nexpected {expected:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn resends_and_redeliveries_yield_the_deduplicated_journal(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = rt.block_on(run_case(steps));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
