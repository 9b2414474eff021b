//! The store contract suite: one async function per part of the contract
//! (see the `store` module docs), run against every implementation with
//! [`store_contract_tests!`]:
//!
//! ```ignore
//! crate::store::contract::store_contract_tests!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = EmbeddedStore::open(dir.path()).unwrap();
//!     (Arc::new(store) as Arc<dyn EventStore>, dir) // (store, guard kept alive)
//! });
//! ```
//!
//! Every function uses fresh ids (a uuid prefix) and its own far-away day,
//! so the suite also runs against a shared server whose journal and
//! projections already hold other data. `reset` is global, so the tests that
//! read projections hold a read lock and the reset test the write lock
//! (within one test process).
#![cfg(test)]

use crate::domain::position::Source;
use crate::domain::{
    InteractionTracked, InteractionType, RejectReason, Rejection, Target, EVENT_SCHEMA_VERSION,
};
use crate::store::projections::Recount;
use crate::store::{
    AppendConflict, AppendGroup, DailyStat, EventMeta, EventStore, GroupOutcome, JournalGuard,
    JournalRecord, Numbering, ProjectionKind, ProjectionMode, StatsQuery, StatusStat, StoredEvent,
    UserStats, WriteBatch, WriteOutcome,
};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

use InteractionType::{Click, Like, View};

/// Held for reading by the tests that check projections, for writing by `reset`.
static PROJECTIONS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Fresh names, a day and a command-log partition of this test's own.
pub(crate) struct Fx {
    tag: String,
    day: NaiveDate,
    /// The partition its commands come from (a store that folds its
    /// projections behind the journal folds this test's partition).
    partition: u32,
    /// The log position of each command (by interaction or command id),
    /// so that writing a command again uses its first position.
    positions: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// (user, daily key) pairs written so far (first-of-key flags).
    keys: std::sync::Mutex<std::collections::HashSet<(String, crate::domain::decide::DailyKey)>>,
}

impl Fx {
    pub(crate) fn new() -> Self {
        // Days of their own: a slot of 5 days per fixture, from a random
        // start per process (tests share a server's stats by day), within
        // the days the rules accept (1970 on, not in the future).
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static SLOT: AtomicU64 = AtomicU64::new(0);
        let id = uuid::Uuid::new_v4();
        let start = *START.get_or_init(|| (id.as_u128() % 4_000) as u64);
        let slot = (start + SLOT.fetch_add(1, Ordering::Relaxed)) % 4_000;
        let base = NaiveDate::from_ymd_opt(1970, 1, 2).unwrap();
        let day = base + Days::new(slot * 5);
        Fx {
            tag: id.simple().to_string(),
            day,
            partition: 1_000_000 + (id.as_u128() % 1_000_000_000) as u32,
            positions: Default::default(),
            keys: Default::default(),
        }
    }

    /// The position of the command with this id (the same every time).
    pub(crate) fn source(&self, id: &str) -> Source {
        let mut p = self.positions.lock().unwrap();
        let n = p.len() as u64;
        let entry = *p.entry(id.to_owned()).or_insert(n);
        Source {
            partition: self.partition,
            position: crate::domain::position::Position::new(0, entry, 0),
        }
    }

    /// A group of `user`'s events after `expected_last_seq`, each with its
    /// command's position and whether it is the user's first on its key
    /// (as a decision would have said).
    pub(crate) fn group(
        &self,
        user: &str,
        expected_last_seq: u64,
        events: Vec<InteractionTracked>,
    ) -> AppendGroup {
        let meta = events
            .iter()
            .map(|e| {
                let key = crate::domain::decide::DailyKey::of(e);
                let first_of_key = self.keys.lock().unwrap().insert((e.user_id.clone(), key));
                EventMeta {
                    source: self.source(&e.interaction_id),
                    first_of_key,
                }
            })
            .collect();
        AppendGroup {
            user_id: user.to_owned(),
            expected_last_seq,
            numbering: Numbering::Expected,
            events,
            meta,
        }
    }

    /// [`Self::group`] for the store to number ([`Numbering::Store`]): the
    /// events carry `1, 2, ...`.
    pub(crate) fn numbered(&self, user: &str, events: Vec<InteractionTracked>) -> AppendGroup {
        AppendGroup {
            numbering: Numbering::Store,
            ..self.group(user, 0, events)
        }
    }

    pub(crate) fn groups(&self, groups: Vec<AppendGroup>) -> WriteBatch {
        self.batch(groups, Vec::new())
    }

    /// A batch with each rejection's command position.
    pub(crate) fn batch(&self, groups: Vec<AppendGroup>, rejections: Vec<Rejection>) -> WriteBatch {
        WriteBatch {
            groups,
            rejection_sources: rejections
                .iter()
                .map(|r| self.source(&r.command_id))
                .collect(),
            rejections,
        }
    }

    /// Folds this test's partition of a store that folds its projections.
    pub(crate) async fn fold(&self, store: &dyn EventStore) {
        let Some(fold) = store.folding() else {
            return;
        };
        let mut cp = fold.checkpoint(self.partition).await.unwrap();
        loop {
            let records = fold
                .read(
                    self.partition,
                    cp.position,
                    crate::domain::position::Position::MAX,
                    100,
                )
                .await
                .unwrap();
            if records.is_empty() {
                return;
            }
            cp = fold.fold(self.partition, cp, &records).await.unwrap();
        }
    }

    pub(crate) fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    fn d(&self, offset: u64) -> NaiveDate {
        self.day + Days::new(offset)
    }

    /// `day + offset` at `hour`:00:00.123456789 UTC.
    /// (With nanoseconds: stores must give instants back exactly.)
    fn at(&self, offset: u64, hour: u32) -> DateTime<Utc> {
        let t = self.d(offset).and_hms_nano_opt(hour, 0, 0, 123_456_789);
        Utc.from_utc_datetime(&t.unwrap())
    }

    /// An event with a unique interaction id, on this test's target and
    /// campaign `c1`, at `day` 10:00, recorded when it occurred.
    pub(crate) fn ev(&self, user: &str, seq: u64, ty: InteractionType) -> InteractionTracked {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let at = self.at(0, 10);
        InteractionTracked {
            schema_version: EVENT_SCHEMA_VERSION,
            interaction_id: self.name(&format!("i{n}")),
            user_id: user.to_owned(),
            seq,
            interaction_type: ty,
            target: Target {
                id: self.name("target"),
                kind: "post".into(),
            },
            campaign_id: Some(self.name("c1")),
            occurred_at: at,
            affiliate_id: Some("aff".into()),
            correlation_id: None,
            recorded_at: Some(at),
        }
    }

    pub(crate) fn rejection(&self, command: &str, at: DateTime<Utc>) -> Rejection {
        Rejection {
            command_id: self.name(command),
            reason: RejectReason::Malformed,
            detail: "bad".into(),
            rejected_at: at,
        }
    }

    fn owns(&self, r: &JournalRecord) -> bool {
        match r {
            JournalRecord::Event(e) => e.event.user_id.starts_with(&self.tag),
            JournalRecord::Rejection(r) => r.rejection.command_id.starts_with(&self.tag),
        }
    }
}

/// A group without log positions (stores that do not need them).
#[allow(dead_code)] // used by the actors' tests
pub(crate) fn group(
    user: &str,
    expected_last_seq: u64,
    events: Vec<InteractionTracked>,
) -> AppendGroup {
    AppendGroup {
        user_id: user.to_owned(),
        expected_last_seq,
        numbering: Numbering::Expected,
        events,
        meta: Vec::new(),
    }
}

#[allow(dead_code)] // kept beside `group` for the actors' tests
pub(crate) fn groups(groups: Vec<AppendGroup>) -> WriteBatch {
    WriteBatch {
        groups,
        ..Default::default()
    }
}

pub(crate) async fn write(store: &dyn EventStore, batch: WriteBatch) -> WriteOutcome {
    let out = store.write(batch.clone().into()).await.unwrap();
    assert_eq!(out.groups.len(), batch.groups.len());
    assert_eq!(out.rejections.len(), batch.rejections.len());
    out
}

pub(crate) fn appended(o: &GroupOutcome) -> u64 {
    match o {
        GroupOutcome::Appended { first_pos, .. } => *first_pos,
        other => panic!("expected an append, got {other:?}"),
    }
}

fn stored(first_pos: u64, events: &[InteractionTracked]) -> Vec<StoredEvent> {
    (first_pos..)
        .zip(events)
        .map(|(pos, event)| StoredEvent::new(pos, event.clone()))
        .collect()
}

/// `got` holds `events` in order, the first at `first_pos`, at strictly
/// increasing positions (consecutive ones for a store with store-wide
/// positions).
#[track_caller]
fn assert_stored(
    store: &dyn EventStore,
    got: &[StoredEvent],
    first_pos: u64,
    events: &[InteractionTracked],
) {
    if checkpointed(store) {
        assert_eq!(got, stored(first_pos, events));
        return;
    }
    let evs: Vec<&InteractionTracked> = got.iter().map(|e| &*e.event).collect();
    assert_eq!(evs, events.iter().collect::<Vec<_>>());
    assert_eq!(
        got.first().map(|e| e.pos),
        events.first().map(|_| first_pos)
    );
    assert!(got.windows(2).all(|w| w[0].pos < w[1].pos), "{got:?}");
}

fn checkpointed(store: &dyn EventStore) -> bool {
    store.projection_mode() == ProjectionMode::Checkpointed
}

/// The journal head, or 0 for stores without positions to scan by.
async fn head0(store: &dyn EventStore) -> u64 {
    if checkpointed(store) {
        store.head().await.unwrap()
    } else {
        0
    }
}

/// Applies every record above the checkpoint, `page` records per call
/// (a store that folds its projections: folds the test's partition).
async fn catch_up(store: &dyn EventStore, fx: &Fx, p: ProjectionKind, page: usize) {
    if !checkpointed(store) {
        fx.fold(store).await;
        return;
    }
    loop {
        let cp = store.checkpoint(p).await.unwrap();
        let records = store.scan(cp, page).await.unwrap();
        let Some(last) = records.last() else { break };
        assert!(store.apply(p, &records).await.unwrap() >= last.pos());
    }
}

async fn catch_up_all(store: &dyn EventStore, fx: &Fx) {
    for p in ProjectionKind::ALL {
        catch_up(store, fx, p, 500).await;
    }
}

/// This test's records after `after`, in position order (scanned in pages).
pub(crate) async fn own_records(store: &dyn EventStore, fx: &Fx, after: u64) -> Vec<JournalRecord> {
    if !checkpointed(store) {
        let mut out = Vec::new();
        store
            .visit_journal(&mut |r| {
                if fx.owns(&r) && r.pos() > after {
                    out.push(r)
                }
            })
            .await
            .unwrap();
        out.sort_by_key(|r| r.pos());
        return out;
    }
    let (mut out, mut from) = (Vec::new(), after);
    loop {
        let page = store.scan(from, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.pos();
        out.extend(page.into_iter().filter(|r| fx.owns(r)));
    }
    out
}

pub(crate) type Snapshot = (Vec<DailyStat>, Vec<StatusStat>, Vec<Option<UserStats>>);

/// The projections as far as this test's day range and users are concerned.
pub(crate) async fn snapshot(store: &dyn EventStore, fx: &Fx, users: &[String]) -> Snapshot {
    let q = StatsQuery {
        from: fx.d(0),
        to: fx.d(3),
        campaign_id: None,
        interaction_type: None,
    };
    let mut stats = Vec::new();
    for u in users {
        stats.push(store.user_stats(u).await.unwrap());
    }
    (
        store.daily_stats(&q).await.unwrap(),
        store.status_stats(fx.d(0), fx.d(3)).await.unwrap(),
        stats,
    )
}

/// A mix of events (two users, types, campaigns, days) and rejections.
async fn write_mix(store: &dyn EventStore, fx: &Fx) -> Vec<String> {
    let (a, b) = (fx.name("a"), fx.name("b"));
    let mut ea = vec![fx.ev(&a, 1, Click), fx.ev(&a, 2, View), fx.ev(&a, 3, Like)];
    ea[1].campaign_id = Some(fx.name("c2"));
    ea[2].occurred_at = fx.at(1, 9);
    ea[2].recorded_at = Some(fx.at(2, 9));
    let mut eb = vec![fx.ev(&b, 1, Click), fx.ev(&b, 2, Click)];
    eb[1].campaign_id = None;
    let batch = fx.batch(
        vec![fx.group(&a, 0, ea), fx.group(&b, 0, eb)],
        vec![
            fx.rejection("r1", fx.at(0, 11)),
            fx.rejection("r2", fx.at(1, 11)),
        ],
    );
    write(store, batch).await;
    vec![a, b]
}

mod journal;
mod projections;

pub use journal::*;
pub use projections::*;

/// Expands to one `#[tokio::test]` per contract function. `$make` is a
/// future (e.g. an `async` block) yielding `(Arc<dyn EventStore>, guard)`;
/// the guard (a temp dir, a database connection) lives until the test ends.
///
/// `common:` is the contract of every store; `conditional:` adds what a
/// [`JournalGuard::Conditional`] store refuses, `deterministic:` what a
/// [`JournalGuard::Deterministic`] store must absorb (the same commit
/// written twice, a late one); `checkpointed:` what only a
/// [`ProjectionMode::Checkpointed`] store has (positions to scan by,
/// checkpoints, reset, cursors). `ignored` marks the tests `#[ignore]`
/// (stores that need a server).
macro_rules! store_contract_tests {
    (common: $make:expr) => {
        $crate::store::contract::store_contract_tests!(@each [cfg(all())] $make; COMMON);
    };
    (ignored common: $make:expr) => {
        $crate::store::contract::store_contract_tests!(
            @each [ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"] $make; COMMON);
    };
    (conditional: $make:expr) => {
        $crate::store::contract::store_contract_tests!(@each [cfg(all())] $make;
            seq_mismatch_writes_nothing,
            store_numbering_follows_the_last_seq,
            duplicate_interaction_id_is_a_conflict,
            rejections_are_idempotent,
        );
    };
    (ignored deterministic: $make:expr) => {
        $crate::store::contract::store_contract_tests!(
            @each [ignore = "needs a CQL server: SCYLLA_NODES (see .ci/run)"] $make;
            a_commit_written_again_changes_nothing,
            a_late_commit_never_moves_a_user_back,
            a_group_to_number_is_refused,
        );
    };
    (checkpointed: $make:expr) => {
        $crate::store::contract::store_contract_tests!(@each [cfg(all())] $make;
            positions_increase_and_scan_returns_all,
            reset_then_reapply,
            cursors_start_at_zero_and_move,
        );
    };
    (@each [$attr:meta] $make:expr; COMMON) => {
        $crate::store::contract::store_contract_tests!(@each [$attr] $make;
            append_and_read_back,
            apply_is_idempotent_and_matches_recount,
            daily_stats_filters_and_unique_users,
            status_counts,
            user_stats_fold,
            recent_by_target_and_pagination,
        );
    };
    (@each [$attr:meta] $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            #[$attr]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::store::contract::$name(&*store).await;
            }
        )+
    };
}
pub(crate) use store_contract_tests;
