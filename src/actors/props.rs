//! Property test of the aggregate's idempotency: any sequence of deliveries,
//! redeliveries (the same delivery again, in the same or a later batch,
//! possibly to a freshly restarted aggregate) and duplicates (the same
//! interaction id sent again, even with other content) yields exactly the
//! events of the deduplicated sequence: the first occurrence of each id, in
//! order, with sequence numbers 1..n and no gaps.
//!
//! It drives the real `UserAggregate` actors and the real `JournalWriter`
//! on an embedded store in a temporary directory; a small collector actor
//! stands in for the partition consumer and hands each batch's outcomes
//! back to the test.

use super::aggregate::{AggregateArgs, AggregateMsg, UserAggregate};
use super::consumer::{ConsumerMsg, Outcome, Work};
use super::writer::WriterMsg;
use super::Names;
use crate::domain::{CommandFormat, InteractionType, Target, TrackInteraction};
use crate::store::embedded::EmbeddedStore;
use crate::store::{EventStore, JournalRecord};
use proptest::prelude::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const USERS: usize = 3;

/// One step of the generated history.
#[derive(Debug, Clone)]
enum Step {
    /// A new message: user, interaction id (small, so ids repeat), type.
    Send(usize, usize, usize),
    /// The `n`-th earlier message (modulo their count) delivered again.
    Redeliver(usize),
    /// Close the current batch of this user (and maybe restart its
    /// aggregate, as passivation or a crash would, before the next one).
    Cut(usize, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..USERS, 0..6usize, 0..3usize).prop_map(|(u, i, t)| Step::Send(u, i, t)),
        2 => any::<usize>().prop_map(Step::Redeliver),
        2 => (0..USERS, any::<bool>()).prop_map(|(u, r)| Step::Cut(u, r)),
    ]
}

/// Stands in for the partition consumer: forwards outcomes to the test.
struct Collector;

/// Where the collector forwards each `Processed`: its user and outcomes.
type Outcomes = mpsc::UnboundedSender<(String, Vec<(u64, Outcome)>)>;

impl Actor for Collector {
    type Msg = ConsumerMsg;
    type State = Outcomes;
    type Arguments = Outcomes;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: ConsumerMsg,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ConsumerMsg::Processed(reports) = msg {
            for r in reports {
                let _ = tx.send((r.user_id, r.outcomes));
            }
        }
        Ok(())
    }
}

fn command(user: usize, id: usize, ty: usize) -> TrackInteraction {
    TrackInteraction {
        interaction_id: format!("u{user}-i{id}"),
        user_id: format!("u{user}"),
        interaction_type: InteractionType::ALL[ty].as_str().to_owned(),
        target: Target {
            id: format!("post-{ty}"),
            kind: "post".into(),
        },
        campaign_id: Some("c-1".into()),
        affiliate_id: None,
        occurred_at: chrono::Utc::now() - chrono::Duration::hours(1),
        correlation_id: None,
        format: CommandFormat::Canonical,
    }
}

/// Each user's batches, in order, each with a restart flag.
type Plan = Vec<Vec<(bool, Vec<Work>)>>;

/// A command-log position for delivery `n` (the embedded store ignores it).
fn source(n: u64) -> crate::log::Source {
    crate::log::Source {
        partition: 0,
        position: crate::log::Position::new(0, n, 0),
    }
}

fn plan(steps: &[Step]) -> Plan {
    let mut sent: Vec<(usize, Work)> = Vec::new();
    let mut open: Vec<Vec<Work>> = vec![Vec::new(); USERS];
    let mut restart = [false; USERS];
    let mut plan: Plan = vec![Vec::new(); USERS];
    for s in steps {
        match *s {
            Step::Send(u, id, ty) => {
                let w = Work {
                    delivery_id: sent.len() as u64,
                    command: Arc::new(command(u, id, ty)),
                    published_at_ms: chrono::Utc::now().timestamp_millis(),
                    source: source(sent.len() as u64),
                };
                open[u].push(w.clone());
                sent.push((u, w));
            }
            Step::Redeliver(n) if !sent.is_empty() => {
                let (u, w) = sent[n % sent.len()].clone();
                open[u].push(w);
            }
            Step::Redeliver(_) => {}
            Step::Cut(u, r) => {
                if !open[u].is_empty() {
                    plan[u].push((restart[u], std::mem::take(&mut open[u])));
                }
                restart[u] = r;
            }
        }
    }
    for (u, works) in open.into_iter().enumerate() {
        if !works.is_empty() {
            plan[u].push((restart[u], works));
        }
    }
    plan
}

async fn spawn_aggregate(
    user: usize,
    store: &Arc<dyn EventStore>,
    names: &Names,
    collector: &ActorRef<ConsumerMsg>,
) -> ActorRef<AggregateMsg> {
    let args = AggregateArgs {
        user_id: format!("u{user}"),
        store: store.clone(),
        names: names.clone(),
        consumer: collector.get_derived(),
        processing: crate::internal_events::Processing::register(),
    };
    let (a, _) = Actor::spawn(None, UserAggregate, args)
        .await
        .expect("spawn aggregate");
    a
}

/// Runs one user's batches through its aggregate; checks each outcome
/// (first occurrence of an id persisted, any later one a duplicate).
async fn drive_user(
    user: usize,
    batches: Vec<(bool, Vec<Work>)>,
    store: Arc<dyn EventStore>,
    names: Names,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (collector, _) = Actor::spawn(None, Collector, tx)
        .await
        .map_err(|e| e.to_string())?;
    let mut aggregate = spawn_aggregate(user, &store, &names, &collector).await;
    let mut seen = HashSet::new();
    let mut restarts = 0;
    for (restart, works) in batches {
        if restart {
            // Passivation either stops the actor (idle timeout) or rebinds
            // it (at the cap; here to a user it never serves, then back):
            // neither may lose or double a command.
            restarts += 1;
            if restarts % 2 == 0 {
                // An empty batch only rebinds.
                for to in [format!("scratch-{user}"), format!("u{user}")] {
                    let rebind = AggregateMsg::Rebind {
                        user_id: to,
                        works: Vec::new(),
                    };
                    aggregate.send_message(rebind).map_err(|e| e.to_string())?;
                }
            } else {
                aggregate.stop(None);
                aggregate = spawn_aggregate(user, &store, &names, &collector).await;
            }
        }
        let expected: Vec<(u64, Outcome)> = works
            .iter()
            .map(|w| {
                let first = seen.insert(w.command.interaction_id.clone());
                let o = if first {
                    Outcome::Persisted
                } else {
                    Outcome::Duplicate
                };
                (w.delivery_id, o)
            })
            .collect();
        aggregate
            .send_message(AggregateMsg::Commands(works))
            .map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .map_err(|_| format!("u{user}: no outcomes within 20 s"))?
            .ok_or("collector stopped")?;
        if got.0 != format!("u{user}") {
            return Err(format!("u{user}: outcomes reported for {}", got.0));
        }
        let got = got.1;
        if got != expected {
            return Err(format!("u{user}: outcomes {got:?}, expected {expected:?}"));
        }
    }
    aggregate.stop(None);
    collector.stop(None);
    Ok(())
}

/// The deduplicated sequence: per user, (id, type) of each first occurrence.
fn expected_journal(plan: &Plan) -> BTreeMap<String, Vec<(String, InteractionType)>> {
    let mut out: BTreeMap<String, Vec<(String, InteractionType)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for batches in plan {
        for w in batches.iter().flat_map(|(_, works)| works) {
            let c = &w.command;
            if seen.insert(c.interaction_id.clone()) {
                let ty = InteractionType::parse(&c.interaction_type).expect("valid type");
                out.entry(c.user_id.clone())
                    .or_default()
                    .push((c.interaction_id.clone(), ty));
            }
        }
    }
    out
}

/// The real journal writer on `store`, registered under `names`.
async fn start_writer(
    store: &Arc<dyn EventStore>,
    names: &Names,
) -> Result<ActorRef<WriterMsg>, String> {
    super::writer::spawn_for_test(store, names)
        .await
        .map(|(writer, _)| writer)
        .map_err(|e| e.to_string())
}

async fn run_case(steps: Vec<Step>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Arc<dyn EventStore> =
        Arc::new(EmbeddedStore::open(dir.path()).map_err(|e| e.to_string())?);
    let names = Names::new();
    let writer = start_writer(&store, &names).await?;
    let plan = plan(&steps);
    // Users run concurrently (the writer commits their groups together).
    let drivers: Vec<_> = plan
        .iter()
        .cloned()
        .enumerate()
        .map(|(u, batches)| tokio::spawn(drive_user(u, batches, store.clone(), names.clone())))
        .collect();
    let mut result = Ok(());
    for d in drivers {
        let r = d.await.map_err(|e| e.to_string()).and_then(|r| r);
        result = result.and(r);
    }
    writer.stop(None);
    result?;

    let mut journal: BTreeMap<String, Vec<(String, InteractionType, u64)>> = BTreeMap::new();
    store
        .visit_journal(&mut |r| {
            if let JournalRecord::Event(e) = r {
                let e = e.into_event();
                journal.entry(e.user_id.clone()).or_default().push((
                    e.interaction_id,
                    e.interaction_type,
                    e.seq,
                ));
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let expected: BTreeMap<String, Vec<(String, InteractionType, u64)>> = expected_journal(&plan)
        .into_iter()
        .map(|(user, events)| {
            let numbered = events
                .into_iter()
                .zip(1u64..)
                .map(|((id, ty), seq)| (id, ty, seq))
                .collect();
            (user, numbered)
        })
        .collect();
    if journal != expected {
        return Err(format!("journal {journal:?}\nexpected {expected:?}"));
    }
    for (user, events) in &expected {
        let last = store.last_seq(user).await.map_err(|e| e.to_string())?;
        if last != events.len() as u64 {
            return Err(format!(
                "{user}: last_seq {last}, expected {}",
                events.len()
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn redeliveries_and_duplicates_yield_the_deduplicated_journal(
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

/// A fresh embedded store (the directory lives as long as the guard), its
/// names (no writer yet) and a collector whose reports arrive on the receiver.
async fn fixture() -> (
    tempfile::TempDir,
    Arc<dyn EventStore>,
    Names,
    ActorRef<ConsumerMsg>,
    mpsc::UnboundedReceiver<(String, Vec<(u64, Outcome)>)>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let (tx, rx) = mpsc::unbounded_channel();
    let (collector, _) = Actor::spawn(None, Collector, tx).await.expect("collector");
    (dir, store, Names::new(), collector, rx)
}

/// One actor rebound from user to user serves each with that user's own
/// sequence numbers, reports under that user, and still recognises a
/// user's earlier ids after coming back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_aggregate_serves_each_user_with_its_own_state() {
    let (_dir, store, names, collector, mut rx) = fixture().await;
    let writer = start_writer(&store, &names).await.expect("writer");
    let aggregate = spawn_aggregate(0, &store, &names, &collector).await;
    // (rebind to, commands as (user, id), expected outcomes)
    let steps = [
        (
            None,
            vec![(0, 1), (0, 2)],
            vec![Outcome::Persisted, Outcome::Persisted],
        ),
        (Some(1), vec![(1, 1)], vec![Outcome::Persisted]),
        (
            Some(0),
            vec![(0, 1), (0, 3)],
            vec![Outcome::Duplicate, Outcome::Persisted],
        ),
    ];
    let mut delivery = 0;
    for (rebind, commands, want) in steps {
        let user = commands[0].0;
        let works = commands
            .iter()
            .map(|(u, id)| {
                delivery += 1;
                work_of(delivery, *u, *id)
            })
            .collect::<Vec<_>>();
        let ids: Vec<u64> = works.iter().map(|w| w.delivery_id).collect();
        // A rebind carries the new user's first batch, as at the cap.
        let msg = match rebind {
            Some(u) => AggregateMsg::Rebind {
                user_id: format!("u{u}"),
                works,
            },
            None => AggregateMsg::Commands(works),
        };
        aggregate.send_message(msg).expect("send");
        let (who, got) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("outcomes in time")
            .expect("collector alive");
        assert_eq!(who, format!("u{user}"));
        assert_eq!(got, ids.into_iter().zip(want).collect::<Vec<_>>());
    }
    assert_eq!(store.last_seq("u0").await.expect("u0"), 3);
    assert_eq!(store.last_seq("u1").await.expect("u1"), 1);
    aggregate.stop(None);
    collector.stop(None);
    writer.stop(None);
}

/// At the cap the consumer rebinds a passivated actor to the new user,
/// with that user's first batch. If the actor stopped meanwhile, the
/// batch comes back whole (for a new actor); sent to a live one, it is
/// decided for the new user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebind_to_a_stopped_actor_gives_the_batch_back() {
    let (_dir, store, names, collector, mut rx) = fixture().await;
    let writer = start_writer(&store, &names).await.expect("writer");
    let stopped = spawn_aggregate(0, &store, &names, &collector).await;
    stopped
        .stop_and_wait(None, Some(Duration::from_secs(20)))
        .await
        .expect("stopped");
    let works = vec![work_of(1, 1, 1), work_of(2, 1, 2)];
    let back = super::consumer::route::rebind(&stopped, "u1", works)
        .expect("a stopped actor is not an error")
        .expect("the batch back");
    let ids: Vec<u64> = back.iter().map(|w| w.delivery_id).collect();
    assert_eq!(ids, [1, 2]);
    let live = spawn_aggregate(0, &store, &names, &collector).await;
    let sent = super::consumer::route::rebind(&live, "u1", back).expect("sent");
    assert!(sent.is_none());
    let (who, got) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("outcomes in time")
        .expect("collector alive");
    assert_eq!(who, "u1");
    assert_eq!(got, [(1, Outcome::Persisted), (2, Outcome::Persisted)]);
    assert_eq!(store.last_seq("u1").await.expect("u1"), 2);
    live.stop(None);
    collector.stop(None);
    writer.stop(None);
}

/// Sends one batch to `aggregate` and waits for its report.
async fn one_batch(
    aggregate: &ActorRef<AggregateMsg>,
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<(u64, Outcome)>)>,
    works: Vec<Work>,
) -> Vec<(u64, Outcome)> {
    aggregate
        .send_message(AggregateMsg::Commands(works))
        .expect("send");
    let (_, got) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("outcomes in time")
        .expect("collector alive");
    got
}

fn work_of(delivery_id: u64, user: usize, id: usize) -> Work {
    Work {
        delivery_id,
        command: Arc::new(command(user, id, 0)),
        published_at_ms: chrono::Utc::now().timestamp_millis(),
        source: source(delivery_id),
    }
}

/// Given an aggregate whose cached seq went stale (another aggregate of
/// the same user appended meanwhile, as after a rebalance), when it hands
/// its next batch over, then the store refuses the group, the batch comes
/// back to the aggregate, which decides it again from a reload: persisted
/// with the next seq, reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_a_stale_seq_is_decided_again_and_reported_once() {
    let (_dir, store, names, collector, mut rx) = fixture().await;
    let writer = start_writer(&store, &names).await.expect("writer");
    let a = spawn_aggregate(0, &store, &names, &collector).await;
    let b = spawn_aggregate(0, &store, &names, &collector).await;
    let persisted = |id: u64| vec![(id, Outcome::Persisted)];
    assert_eq!(
        one_batch(&a, &mut rx, vec![work_of(1, 0, 1)]).await,
        persisted(1)
    );
    assert_eq!(
        one_batch(&b, &mut rx, vec![work_of(2, 0, 2)]).await,
        persisted(2)
    );
    // `a` still counts seq 1 as the last.
    assert_eq!(
        one_batch(&a, &mut rx, vec![work_of(3, 0, 3)]).await,
        persisted(3)
    );
    assert!(rx.try_recv().is_err(), "one report per batch");
    let mut seqs = Vec::new();
    store
        .visit_journal(&mut |r| {
            if let JournalRecord::Event(e) = r {
                let e = e.into_event();
                seqs.push((e.interaction_id, e.seq));
            }
        })
        .await
        .expect("journal");
    let want: Vec<(String, u64)> = (1..=3).map(|i| (format!("u0-i{i}"), i as u64)).collect();
    assert_eq!(seqs, want);
    for actor in [a, b] {
        actor.stop(None);
    }
    collector.stop(None);
    writer.stop(None);
}

/// Given no journal writer to hand a batch to (stopped, not yet
/// restarted), when an aggregate decides a batch, then the dropped
/// handoff reports it retryable, once, with nothing written; once a
/// writer is back, the same command is persisted with seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_no_writer_took_is_reported_retryable_then_persisted() {
    let (_dir, store, names, collector, mut rx) = fixture().await;
    let a = spawn_aggregate(0, &store, &names, &collector).await;
    let got = one_batch(&a, &mut rx, vec![work_of(1, 0, 1)]).await;
    assert!(
        matches!(
            got.as_slice(),
            [(
                1,
                Outcome::Retry {
                    retryable: true,
                    ..
                }
            )]
        ),
        "{got:?}"
    );
    assert_eq!(store.last_seq("u0").await.expect("seq"), 0);
    assert!(rx.try_recv().is_err(), "one report per batch");
    let writer = start_writer(&store, &names).await.expect("writer");
    let got = one_batch(&a, &mut rx, vec![work_of(2, 0, 1)]).await;
    assert_eq!(got, vec![(2, Outcome::Persisted)]);
    assert_eq!(store.last_seq("u0").await.expect("seq"), 1);
    a.stop(None);
    collector.stop(None);
    writer.stop(None);
}
