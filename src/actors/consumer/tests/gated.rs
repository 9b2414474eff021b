//! A store whose writes can be held at a gate (a slow or stalled store) or
//! fail (retryable), delegating everything to a real store: the consumer
//! tests drive flow control and back-off with it.

use crate::store::{
    DailyStat, EventStore, GroupOutcome, JournalGuard, JournalRecord, ProjectionKind,
    ProjectionMode, StatsQuery, StatusStat, StoreError, StoredEvent, UserStats, WriteBatch,
    WriteOutcome,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

pub(super) struct GatedStore {
    inner: Arc<dyn EventStore>,
    /// Writes pass while it is `true`.
    open: watch::Sender<bool>,
    /// The next this-many writes fail with `Unavailable`.
    failing: AtomicU32,
    /// When each write was asked for, failed ones included.
    attempts: Mutex<Vec<Instant>>,
    /// Writes waiting at the closed gate.
    held: AtomicUsize,
    /// Events appended by the writes that succeeded.
    persisted: AtomicUsize,
}

impl GatedStore {
    pub(super) fn new(inner: Arc<dyn EventStore>) -> Self {
        Self {
            inner,
            open: watch::Sender::new(true),
            failing: AtomicU32::new(0),
            attempts: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            persisted: AtomicUsize::new(0),
        }
    }

    /// Holds every write from now on (`false`) or lets them through.
    pub(super) fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    pub(super) fn fail_next(&self, n: u32) {
        self.failing.store(n, Ordering::SeqCst);
    }

    pub(super) fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }

    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub(super) fn persisted(&self) -> usize {
        self.persisted.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventStore for GatedStore {
    fn kind(&self) -> &'static str {
        "gated"
    }
    fn projection_mode(&self) -> ProjectionMode {
        self.inner.projection_mode()
    }
    fn journal_guard(&self) -> JournalGuard {
        self.inner.journal_guard()
    }
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        self.attempts.lock().unwrap().push(Instant::now());
        let mut open = self.open.subscribe();
        self.held.fetch_add(1, Ordering::SeqCst);
        let passed = open.wait_for(|o| *o).await.is_ok();
        self.held.fetch_sub(1, Ordering::SeqCst);
        if !passed {
            return Err(StoreError::Unavailable("gate dropped".into()));
        }
        let fail = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let outcome = self.inner.write(batch.clone()).await?;
        let appended: usize = batch
            .groups
            .iter()
            .zip(&outcome.groups)
            .filter(|(_, o)| matches!(o, GroupOutcome::Appended { .. }))
            .map(|(g, _)| g.events.len())
            .sum();
        self.persisted.fetch_add(appended, Ordering::SeqCst);
        Ok(outcome)
    }
    async fn last_seq(&self, u: &str) -> Result<u64, StoreError> {
        self.inner.last_seq(u).await
    }
    async fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.interaction(id).await
    }
    async fn interaction_owners(&self, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        self.inner.interaction_owners(ids).await
    }
    async fn user_events(
        &self,
        u: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.user_events(u, after, limit).await
    }
    async fn recent(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.recent(before, limit).await
    }
    async fn by_target(
        &self,
        t: &str,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.by_target(t, from, to, limit).await
    }
    async fn scan(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        self.inner.scan(after, limit).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        self.inner.head().await
    }
    fn durable_head(&self) -> Option<u64> {
        self.inner.durable_head()
    }
    fn make_durable(&self) -> Result<Option<u64>, StoreError> {
        self.inner.make_durable()
    }
    fn defer_syncs(&self) {
        self.inner.defer_syncs()
    }
    async fn checkpoint(&self, p: ProjectionKind) -> Result<u64, StoreError> {
        self.inner.checkpoint(p).await
    }
    async fn apply(&self, p: ProjectionKind, r: &[JournalRecord]) -> Result<u64, StoreError> {
        self.inner.apply(p, r).await
    }
    async fn reset(&self, p: ProjectionKind) -> Result<(), StoreError> {
        self.inner.reset(p).await
    }
    async fn daily_stats(&self, q: &StatsQuery) -> Result<Vec<DailyStat>, StoreError> {
        self.inner.daily_stats(q).await
    }
    async fn status_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatusStat>, StoreError> {
        self.inner.status_stats(from, to).await
    }
    async fn user_stats(&self, u: &str) -> Result<Option<UserStats>, StoreError> {
        self.inner.user_stats(u).await
    }
    async fn all_user_stats(&self) -> Result<Vec<UserStats>, StoreError> {
        self.inner.all_user_stats().await
    }
    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.cursor(name).await
    }
    async fn set_cursor(&self, name: &str, pos: u64) -> Result<(), StoreError> {
        self.inner.set_cursor(name, pos).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}
