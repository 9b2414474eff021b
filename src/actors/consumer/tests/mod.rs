//! The partition consumer on the in-memory command log and a real store
//! (embedded, in a temporary directory) behind a gate, with the real
//! writer and aggregates, on paused time: flow control while the store
//! stalls, and the back-off after retryable store failures, measured on
//! the clock the consumer's timers run on.

mod gated;

use super::{ConsumerArgs, ConsumerMsg, PartitionConsumer};
use crate::actors::{Names, PipelineConfig};
use crate::health::Health;
use crate::log::memory::MemoryLog;
use crate::log::{CommandLog, NewRecord};
use crate::store::embedded::EmbeddedStore;
use crate::store::EventStore;
use gated::GatedStore;
use ractor::{Actor, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a test waits for something, in (paused) time.
const DEADLINE: Duration = Duration::from_secs(600);

/// A consumer of partition 0 of a one-partition memory log, and the store
/// behind it.
struct Rig {
    log: Arc<MemoryLog>,
    store: Arc<GatedStore>,
    consumer: ActorRef<ConsumerMsg>,
    writer: ActorRef<crate::actors::writer::WriterMsg>,
    names: Names,
    config: PipelineConfig,
    _dir: tempfile::TempDir,
}

fn config() -> PipelineConfig {
    PipelineConfig {
        max_in_flight: 4,
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(60),
        commit_interval: Duration::from_millis(100),
        ..PipelineConfig::default()
    }
}

async fn spawn_consumer(
    log: &Arc<MemoryLog>,
    store: &Arc<GatedStore>,
    names: &Names,
    config: &PipelineConfig,
) -> ActorRef<ConsumerMsg> {
    let args = ConsumerArgs {
        partition: 0,
        log: log.clone(),
        store: store.clone(),
        names: names.clone(),
        health: Arc::new(Health::default()),
        config: config.clone(),
        aggregate_cap: 100,
        sink: None,
    };
    let (consumer, _) = Actor::spawn(None, PartitionConsumer, args).await.unwrap();
    consumer
}

impl Rig {
    async fn start(config: PipelineConfig, prepare: impl FnOnce(&GatedStore)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let store = Arc::new(GatedStore::new(inner));
        prepare(&store);
        let as_store: Arc<dyn EventStore> = store.clone();
        let names = Names::new();
        let (writer, _) = crate::actors::writer::spawn_for_test(&as_store, &names)
            .await
            .unwrap();
        let log = MemoryLog::new(1);
        let consumer = spawn_consumer(&log, &store, &names, &config).await;
        Rig {
            log,
            store,
            consumer,
            writer,
            names,
            config,
            _dir: dir,
        }
    }

    /// The process crashes and starts again: the log loses the acks not
    /// committed, a new consumer takes the partition; the store stays.
    async fn crash_and_restart(&mut self) {
        self.log = self.log.reopen();
        self.consumer.stop(None);
        self.consumer = spawn_consumer(&self.log, &self.store, &self.names, &self.config).await;
    }

    async fn append(&self, records: Vec<NewRecord>) {
        self.log.append(records).await.unwrap();
    }

    fn committed(&self) -> Vec<u64> {
        self.log.committed(0)
    }

    /// The interaction ids of `user`'s events, in sequence order (their
    /// sequence numbers checked to be 1..n).
    async fn journal_of(&self, user: &str) -> Vec<String> {
        let events = self.store.user_events(user, 0, 1000).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        events
            .iter()
            .map(|e| e.event.interaction_id.clone())
            .collect()
    }

    fn stop(self) {
        self.consumer.stop(None);
        self.writer.stop(None);
    }
}

/// A track command of `user` with interaction id `id`.
fn command(user: &str, id: &str) -> NewRecord {
    let payload = serde_json::json!({
        "interaction_id": id,
        "user_id": user,
        "interaction_type": "click",
        "target": {"id": "post-1", "type": "post"},
        "campaign_id": "c-1",
        "affiliate_id": "a-1",
        "occurred_at": "2026-01-15T10:00:00Z",
    });
    NewRecord {
        key: user.to_owned(),
        payload: payload.to_string().into_bytes(),
        properties: HashMap::new(),
    }
}

/// Lets the actors run (paused time moves on by itself while they wait
/// on timers) until `cond` holds; checks `invariant` at every step.
async fn until(what: &str, mut cond: impl FnMut() -> bool, mut invariant: impl FnMut()) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        invariant();
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Five users, four commands each, one partition.
fn twenty_commands() -> (Vec<NewRecord>, Vec<(String, Vec<String>)>) {
    let users: Vec<(String, Vec<String>)> = (0..5)
        .map(|u| {
            let user = format!("user-{u}");
            let ids = (0..4).map(|i| format!("{user}-i{i}")).collect();
            (user, ids)
        })
        .collect();
    let records = (0..4)
        .flat_map(|i| {
            users
                .iter()
                .map(move |(user, ids)| command(user, &ids[i]))
                .collect::<Vec<_>>()
        })
        .collect();
    (records, users)
}

#[tokio::test(start_paused = true)]
async fn given_a_stalled_store_when_commands_arrive_then_at_most_max_in_flight_are_outstanding() {
    let config = config();
    let window = config.max_in_flight;
    let rig = Rig::start(config, |store| store.set_open(false)).await;
    let (records, users) = twenty_commands();
    rig.append(records).await;

    let log = rig.log.clone();
    let within_window = || assert!(log.peak_outstanding(0) <= window, "window exceeded");
    until(
        "a full window at the stalled store",
        || log.outstanding(0) == window && rig.store.held() == 1,
        within_window,
    )
    .await;
    // Long after, on the consumer's clock: many commit ticks, no progress.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(log.outstanding(0), window);
    assert_eq!(log.peak_outstanding(0), window);
    assert!(
        rig.committed().is_empty(),
        "nothing persisted, nothing acked"
    );
    assert_eq!(rig.store.attempts().len(), 1, "one commit at a time");

    rig.store.set_open(true);
    until(
        "every command committed",
        || rig.committed().len() == 20,
        within_window,
    )
    .await;
    assert_eq!(rig.committed(), (0..20).collect::<Vec<u64>>());
    assert_eq!(log.outstanding(0), 0);
    for (user, ids) in &users {
        assert_eq!(rig.journal_of(user).await, *ids, "{user}");
    }
    rig.stop();
}

#[tokio::test(start_paused = true)]
async fn given_retryable_store_failures_when_a_user_writes_then_it_backs_off_and_persists_once() {
    let config = config();
    let (first, second) = (config.backoff(1), config.backoff(2));
    assert_eq!(
        (first, second),
        (Duration::from_secs(2), Duration::from_secs(4))
    );
    let rig = Rig::start(config, |store| store.fail_next(2)).await;
    let ids: Vec<String> = (0..3).map(|i| format!("u-i{i}")).collect();
    rig.append(ids.iter().map(|id| command("u", id)).collect())
        .await;

    // Acknowledgements are committed only for what the store holds.
    let acked_after_persisted = || {
        assert!(
            rig.committed().len() <= rig.store.persisted(),
            "committed {:?} with {} persisted",
            rig.committed(),
            rig.store.persisted()
        )
    };
    until(
        "the first failed write",
        || rig.store.attempts().len() == 1,
        acked_after_persisted,
    )
    .await;
    let failed_at = rig.store.attempts()[0];

    // Nothing is tried again before the back-off ends.
    tokio::time::sleep_until(failed_at + first - Duration::from_millis(1)).await;
    assert_eq!(
        rig.store.attempts().len(),
        1,
        "retried before the back-off ended"
    );
    assert!(rig.committed().is_empty());
    assert_eq!(rig.log.outstanding(0), 3, "held, unacknowledged");

    until(
        "the second failed write",
        || rig.store.attempts().len() == 2,
        acked_after_persisted,
    )
    .await;
    until(
        "the third write",
        || rig.store.attempts().len() == 3,
        acked_after_persisted,
    )
    .await;
    until(
        "every command committed",
        || rig.committed().len() == 3,
        acked_after_persisted,
    )
    .await;

    let at = rig.store.attempts();
    let waited = [at[1] - at[0], at[2] - at[1]];
    let slack = Duration::from_millis(50);
    assert!(
        waited[0] >= first && waited[0] < first + slack,
        "first back-off {:?}",
        waited[0]
    );
    assert!(
        waited[1] >= second && waited[1] < second + slack,
        "second back-off {:?}",
        waited[1]
    );
    assert_eq!(at.len(), 3, "one write per attempt");
    assert_eq!(
        rig.journal_of("u").await,
        ids,
        "each command once, in order"
    );
    assert_eq!(rig.committed(), [0, 1, 2]);
    assert!(rig.log.dead_letters().is_empty());
    rig.stop();
}

#[tokio::test(start_paused = true)]
async fn given_an_undecodable_command_when_consumed_then_it_is_dead_lettered_and_the_rest_persisted(
) {
    let rig = Rig::start(config(), |_| {}).await;
    let garbage = NewRecord {
        key: "u".into(),
        payload: b"{not json".to_vec(),
        properties: HashMap::new(),
    };
    rig.append(vec![command("u", "u-i0"), garbage, command("u", "u-i1")])
        .await;
    until(
        "every delivery committed",
        || rig.committed().len() == 3,
        || {},
    )
    .await;
    let dead = rig.log.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].delivery.id, dead[0].reason.as_str()),
        (1, "malformed")
    );
    assert_eq!(rig.journal_of("u").await, ["u-i0", "u-i1"]);
    rig.stop();
}

#[tokio::test(start_paused = true)]
async fn given_a_crash_before_the_acks_were_committed_when_restarted_then_nothing_is_doubled() {
    let config = PipelineConfig {
        commit_interval: Duration::from_secs(3600),
        ..config()
    };
    let mut rig = Rig::start(config, |_| {}).await;
    let ids: Vec<String> = (0..6).map(|i| format!("u-i{i}")).collect();
    rig.append(ids.iter().map(|id| command("u", id)).collect())
        .await;
    let log = rig.log.clone();
    until(
        "every command persisted and acked",
        || rig.store.persisted() == 6 && log.outstanding(0) == 0,
        || {},
    )
    .await;
    assert!(rig.committed().is_empty(), "no commit tick yet");

    // The next process commits as usual.
    rig.config.commit_interval = Duration::from_millis(100);
    rig.crash_and_restart().await;
    until(
        "every redelivery committed",
        || rig.committed().len() == 6,
        || {},
    )
    .await;
    assert!(rig.log.peak_outstanding(0) <= 4);
    assert_eq!(rig.store.persisted(), 6, "redeliveries are duplicates");
    assert_eq!(rig.journal_of("u").await, ids);
    rig.stop();
}
