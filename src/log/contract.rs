//! The command-log contract suite: one async function per part of the
//! contract (see the `log` module docs and the traits' own), run against
//! every implementation with [`log_contract_tests!`]:
//!
//! ```ignore
//! crate::log::contract::log_contract_tests!(common: async {
//!     let log = MemoryLog::new(PARTITIONS);
//!     Subject::new(log.clone(), Some(limit), move |_old| { /* open again */ }, ())
//! });
//! ```
//!
//! A [`Subject`] is a log of [`PARTITIONS`] partitions and a way to open
//! it again as the next process would (the old handle dropped first: a
//! crash, unless the test closed it). Waits are bounded: a delivery that
//! does not come within [`WAIT`] fails the test, and "nothing more is
//! delivered" means nothing within [`QUIET`] (these tests run on real
//! time: the embedded log's writers are threads of their own).
#![cfg(test)]

use crate::log::{CommandLog, Delivery, LogError, NewRecord, PartitionSource};
use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// Partitions of every subject.
pub(crate) const PARTITIONS: u32 = 4;
/// Longest wait for a delivery that must come.
const WAIT: Duration = Duration::from_secs(20);
/// How long a source must stay quiet to count as having nothing more.
const QUIET: Duration = Duration::from_millis(100);

type Reopen = Box<dyn FnMut(Arc<dyn CommandLog>) -> BoxFuture<'static, Arc<dyn CommandLog>> + Send>;

/// A log under test.
pub(crate) struct Subject {
    log: Option<Arc<dyn CommandLog>>,
    reopen: Reopen,
    /// The largest record it accepts, if it has a limit.
    max_record_bytes: Option<usize>,
    _guard: Box<dyn Send>,
}

impl Subject {
    /// `reopen` gets the current handle (to drop, or to reopen from) and
    /// opens the log again as the next process; `guard` lives as long as
    /// the subject (a temporary directory).
    pub(crate) fn new<F>(
        log: Arc<dyn CommandLog>,
        max_record_bytes: Option<usize>,
        reopen: impl FnMut(Arc<dyn CommandLog>) -> F + Send + 'static,
        guard: impl Send + 'static,
    ) -> Self
    where
        F: Future<Output = Arc<dyn CommandLog>> + Send + 'static,
    {
        let mut reopen = reopen;
        Self {
            log: Some(log),
            reopen: Box::new(move |old| Box::pin(reopen(old))),
            max_record_bytes,
            _guard: Box::new(guard),
        }
    }

    fn log(&self) -> &Arc<dyn CommandLog> {
        self.log.as_ref().expect("a subject always has a log")
    }

    /// The next process opens the log (without `close` first: a crash).
    async fn reopen(&mut self) {
        let old = self.log.take().expect("a subject always has a log");
        self.log = Some(within((self.reopen)(old)).await);
    }

    async fn append(&self, records: Vec<NewRecord>) -> Vec<crate::log::Appended> {
        within(self.log().append(records)).await.expect("append")
    }

    async fn open(&self, p: u32) -> (Box<dyn PartitionSource>, Arc<dyn crate::log::Acker>) {
        within(self.log().open(p)).await.expect("open")
    }
}

async fn within<F: Future>(f: F) -> F::Output {
    timeout(WAIT, f).await.expect("timed out")
}

fn rec(key: &str, payload: &str) -> NewRecord {
    NewRecord {
        key: key.to_owned(),
        payload: payload.as_bytes().to_vec(),
        properties: HashMap::from([("kind".to_owned(), "test".to_owned())]),
    }
}

/// A fresh key (unique per call) that the log routes to `partition`.
fn key_in(log: &dyn CommandLog, partition: u32) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|k| log.partition_of(k) == partition)
        .expect("some key routes to every partition")
}

/// The next `n` deliveries.
async fn read_n(source: &mut Box<dyn PartitionSource>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = within(source.next_batch(n - out.len()))
            .await
            .expect("next_batch");
        assert!(!batch.is_empty(), "next_batch returned nothing");
        assert!(batch.len() <= n - out.len(), "more than asked for");
        out.extend(batch);
    }
    out
}

/// Nothing more is delivered (within [`QUIET`]).
async fn assert_idle(source: &mut Box<dyn PartitionSource>) {
    let more = timeout(QUIET, source.next_batch(100)).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

fn texts(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(text).collect()
}

fn ids(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.id).collect()
}

/// Six records of one key appended to partition 0 and read once.
async fn six_read(
    s: &Subject,
) -> (
    Box<dyn PartitionSource>,
    Arc<dyn crate::log::Acker>,
    Vec<Delivery>,
) {
    let key = key_in(&**s.log(), 0);
    s.append((0..6).map(|i| rec(&key, &format!("r{i}"))).collect())
        .await;
    let (mut source, acker) = s.open(0).await;
    let got = read_n(&mut source, 6).await;
    assert_eq!(texts(&got), ["r0", "r1", "r2", "r3", "r4", "r5"]);
    (source, acker, got)
}

/// Appended records are delivered from their key's partition, in append
/// order, with what was appended, ids and positions increasing, and
/// `redelivery_count` 0 the first time.
pub(crate) async fn appended_records_are_delivered_in_order_per_partition(s: &mut Subject) {
    let log = s.log().clone();
    assert_eq!(log.partitions(), PARTITIONS);
    let keys: Vec<String> = (0..PARTITIONS).map(|p| key_in(&*log, p)).collect();
    let records: Vec<NewRecord> = (0..40)
        .map(|i| rec(&keys[i % keys.len()], &format!("p{i}")))
        .collect();
    let mut appended = s.append(records[..25].to_vec()).await;
    appended.extend(s.append(records[25..].to_vec()).await);
    assert_eq!(appended.len(), records.len());
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    for (r, a) in records.iter().zip(&appended) {
        assert_eq!(a.partition, log.partition_of(&r.key), "{r:?}");
        if let Some(before) = last_offset.insert(a.partition, a.offset) {
            assert!(a.offset > before, "offsets increase in a partition");
        }
        expected[a.partition as usize].push(text_of(r));
    }
    let mut identities = BTreeSet::new();
    for (p, exp) in expected.iter().enumerate() {
        let p = p as u32;
        let (mut source, _acker) = s.open(p).await;
        let got = read_n(&mut source, exp.len()).await;
        assert_eq!(texts(&got), *exp, "partition {p}");
        for d in &got {
            assert_eq!((d.partition, d.source().partition), (p, p));
            assert_eq!(d.key.as_deref().map(|k| log.partition_of(k)), Some(p));
            assert_eq!(d.properties.get("kind").map(String::as_str), Some("test"));
            assert_eq!(d.redelivery_count, 0);
            assert!(identities.insert(d.identity.clone()), "identity reused");
        }
        assert!(got.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
        assert!(
            got.windows(2).all(|w| w[0].position < w[1].position),
            "positions increase"
        );
        assert_idle(&mut source).await;
    }
}

fn text_of(r: &NewRecord) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

/// A key's records all go to one partition, the one `partition_of`
/// names; keys spread over the partitions; a partition that does not
/// exist cannot be opened.
pub(crate) async fn a_key_always_goes_to_the_same_partition(s: &mut Subject) {
    let log = s.log().clone();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let keys: Vec<String> = (0..32).map(|i| format!("{tag}-user-{i}")).collect();
    let mut used = BTreeSet::new();
    for key in &keys {
        let p = log.partition_of(key);
        assert!(p < PARTITIONS);
        assert_eq!(log.partition_of(key), p, "stable");
        used.insert(p);
    }
    assert!(used.len() > 1, "32 keys on one partition of {PARTITIONS}");
    let records: Vec<NewRecord> = (0..3)
        .flat_map(|round| keys.iter().map(move |k| rec(k, &format!("{k}/{round}"))))
        .collect();
    for (r, a) in records.iter().zip(s.append(records.clone()).await) {
        assert_eq!(a.partition, log.partition_of(&r.key));
    }
    for p in used {
        let mine: Vec<&String> = keys.iter().filter(|k| log.partition_of(k) == p).collect();
        let (mut source, _) = s.open(p).await;
        let got = read_n(&mut source, mine.len() * 3).await;
        for k in mine {
            let of_key: Vec<String> = got
                .iter()
                .filter(|d| d.key.as_deref() == Some(k.as_str()))
                .map(text)
                .collect();
            assert_eq!(
                of_key,
                (0..3).map(|r| format!("{k}/{r}")).collect::<Vec<_>>()
            );
        }
    }
    assert!(matches!(
        log.open(PARTITIONS).await.map(|_| ()),
        Err(LogError::NoSuchPartition(p)) if p == PARTITIONS
    ));
}

/// At-least-once across a crash: every record whose ack was not committed
/// is delivered again (acked or not), in order, with `redelivery_count`
/// above 0; committed ones never are. A clean `close` commits the acks.
pub(crate) async fn after_a_crash_only_committed_acks_hold(s: &mut Subject) {
    let (source, acker, got) = six_read(s).await;
    acker.ack(&[got[0].id, got[1].id, got[3].id]).await.unwrap();
    acker.commit().await.unwrap();
    acker.ack(&[got[4].id]).await.unwrap(); // never committed
    drop((source, acker));
    s.reopen().await;

    let (mut source, acker) = s.open(0).await;
    let again = read_n(&mut source, 3).await;
    assert_eq!(texts(&again), ["r2", "r4", "r5"]);
    assert!(again.iter().all(|d| d.redelivery_count >= 1), "{again:?}");
    let firsts: Vec<_> = [2, 4, 5]
        .iter()
        .map(|&i| (got[i].identity.clone(), got[i].position))
        .collect();
    let agains: Vec<_> = again
        .iter()
        .map(|d| (d.identity.clone(), d.position))
        .collect();
    assert_eq!(agains, firsts, "a record keeps its identity and position");
    assert_idle(&mut source).await;

    acker.ack(&ids(&again)).await.unwrap();
    within(s.log().close()).await.unwrap();
    drop((source, acker));
    s.reopen().await;
    let (mut source, _) = s.open(0).await;
    assert_idle(&mut source).await;
    let key = got[0].key.clone().expect("a keyed record");
    s.append(vec![rec(&key, "r6")]).await;
    let next = read_n(&mut source, 1).await;
    assert_eq!((text(&next[0]), next[0].redelivery_count), ("r6".into(), 0));
}

/// A consumer restart in the same process (the partition opened again):
/// every record not acked is delivered again, in order; committed ones
/// are not. (An ack not committed yet may hold or not.)
pub(crate) async fn opening_a_partition_again_redelivers_what_was_not_acked(s: &mut Subject) {
    let (source, acker, got) = six_read(s).await;
    acker.ack(&[got[0].id, got[1].id]).await.unwrap();
    acker.commit().await.unwrap();
    acker.ack(&[got[2].id]).await.unwrap();
    drop(source);

    let (mut source, _) = s.open(0).await;
    let first = read_n(&mut source, 1).await;
    let n = if text(&first[0]) == "r2" { 3 } else { 2 };
    let again = [first, read_n(&mut source, n).await].concat();
    let expected: &[&str] = if n == 3 {
        &["r2", "r3", "r4", "r5"]
    } else {
        &["r3", "r4", "r5"]
    };
    assert_eq!(texts(&again), expected);
    assert!(again.iter().all(|d| d.redelivery_count >= 1), "{again:?}");
    assert_idle(&mut source).await;
}

/// `redelivery_count` counts every earlier delivery exactly, across
/// partition reopens and process restarts.
pub(crate) async fn redelivery_count_counts_every_delivery(s: &mut Subject) {
    let key = key_in(&**s.log(), 0);
    s.append(vec![rec(&key, "again and again")]).await;
    for round in 0..4u32 {
        let (mut source, _) = s.open(0).await;
        let d = read_n(&mut source, 1).await.remove(0);
        assert_eq!(d.redelivery_count, round, "{d:?}");
        drop(source);
        if round % 2 == 1 {
            s.reopen().await;
        }
    }
}

/// A record over the implementation's limit refuses the whole append
/// (`TooLarge`, nothing stored); one at the limit is accepted. Logs
/// without a limit of their own pass trivially.
pub(crate) async fn an_oversize_record_is_refused(s: &mut Subject) {
    let Some(max) = s.max_record_bytes else {
        return;
    };
    let key = key_in(&**s.log(), 0);
    let fits = |n: usize| rec(&key, &"x".repeat(n - (key.len() + "kindtest".len())));
    let small = rec(&key, "small");
    let err = s.log().append(vec![small.clone(), fits(max + 1)]).await;
    assert!(
        matches!(err, Err(LogError::TooLarge(n)) if n == max + 1),
        "{err:?}"
    );
    assert_eq!(fits(max).size(), max);
    s.append(vec![fits(max), small]).await;
    let (mut source, _) = s.open(0).await;
    let got = read_n(&mut source, 2).await;
    assert_eq!(got[0].payload.len() + key.len() + "kindtest".len(), max);
    assert_eq!(text(&got[1]), "small");
    assert_idle(&mut source).await;
}

/// Acks of ids that were never delivered (including one a later record
/// will have), or acked twice, do nothing: every record not acked is
/// delivered, and delivered again after a crash.
pub(crate) async fn acks_of_unknown_ids_are_harmless(s: &mut Subject) {
    let key = key_in(&**s.log(), 0);
    s.append((0..3).map(|i| rec(&key, &format!("r{i}"))).collect())
        .await;
    let (mut source, acker) = s.open(0).await;
    let got = read_n(&mut source, 3).await;
    let future = got[2].id + 1;
    acker
        .ack(&[got[0].id, got[0].id, future, u64::MAX])
        .await
        .unwrap();
    acker.commit().await.unwrap();
    s.append(vec![rec(&key, "r3")]).await;
    let next = read_n(&mut source, 1).await;
    assert_eq!((text(&next[0]), next[0].redelivery_count), ("r3".into(), 0));
    drop((source, acker));
    s.reopen().await;
    let (mut source, _) = s.open(0).await;
    assert_eq!(texts(&read_n(&mut source, 3).await), ["r1", "r2", "r3"]);
    assert_idle(&mut source).await;
}

/// `acked_through` covers the longest acked prefix of a partition.
pub(crate) async fn acked_through_follows_the_acked_prefix(s: &mut Subject) {
    let (_source, acker, got) = six_read(s).await;
    assert_eq!(s.log().acked_through(0).await.unwrap(), None);
    acker.ack(&[got[0].id, got[1].id, got[3].id]).await.unwrap();
    acker.commit().await.unwrap();
    let through = s.log().acked_through(0).await.unwrap().expect("a prefix");
    assert!(
        got[1].position <= through && through < got[2].position,
        "{through:?}"
    );
    acker.ack(&[got[2].id]).await.unwrap();
    let through = s.log().acked_through(0).await.unwrap().expect("a prefix");
    assert!(
        got[3].position <= through && through < got[4].position,
        "{through:?}"
    );
    assert!(matches!(
        s.log().acked_through(PARTITIONS).await,
        Err(LogError::NoSuchPartition(_))
    ));
}

/// `close` wakes a waiting reader and ends every source with `Closed`
/// (records left unread included); appends and opens are refused with
/// `Closed`; closing again is harmless.
pub(crate) async fn close_ends_reads_and_refuses_appends_and_opens(s: &mut Subject) {
    let key = key_in(&**s.log(), 0);
    s.append(vec![rec(&key, "r0"), rec(&key, "r1")]).await;
    let (mut waiting, _) = s.open(0).await;
    read_n(&mut waiting, 2).await;
    let (mut unread, _) = s.open(0).await;
    let waiter = tokio::spawn(async move { waiting.next_batch(10).await });
    tokio::task::yield_now().await;
    within(s.log().close()).await.unwrap();
    assert!(matches!(
        within(waiter).await.unwrap(),
        Err(LogError::Closed)
    ));
    assert!(matches!(
        within(unread.next_batch(10)).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(
        s.log().append(vec![rec(&key, "late")]).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(
        s.log().open(0).await.map(|_| ()),
        Err(LogError::Closed)
    ));
    within(s.log().close()).await.unwrap();
}

/// Expands to one `#[tokio::test]` per contract function. `$make` is a
/// future (e.g. an `async` block) yielding a [`Subject`].
///
/// `common:` is the contract of every command log; `counting:` adds an
/// exact `redelivery_count` (the `Delivery` docs; the embedded log keeps a
/// lower bound only). `ignored counting ($why):` lists that part as
/// `#[ignore]`d with the reason, for a log that does not keep it.
macro_rules! log_contract_tests {
    (common: $make:expr) => {
        $crate::log::contract::log_contract_tests!(@each [cfg(all())] $make;
            appended_records_are_delivered_in_order_per_partition,
            a_key_always_goes_to_the_same_partition,
            after_a_crash_only_committed_acks_hold,
            opening_a_partition_again_redelivers_what_was_not_acked,
            an_oversize_record_is_refused,
            acks_of_unknown_ids_are_harmless,
            acked_through_follows_the_acked_prefix,
            close_ends_reads_and_refuses_appends_and_opens,
        );
    };
    (counting: $make:expr) => {
        $crate::log::contract::log_contract_tests!(@each [cfg(all())] $make;
            redelivery_count_counts_every_delivery,
        );
    };
    (ignored counting ($why:literal): $make:expr) => {
        $crate::log::contract::log_contract_tests!(@each [ignore = $why] $make;
            redelivery_count_counts_every_delivery,
        );
    };
    (@each [$attr:meta] $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            #[$attr]
            async fn $name() {
                let mut subject = $make.await;
                $crate::log::contract::$name(&mut subject).await;
            }
        )+
    };
}
pub(crate) use log_contract_tests;
