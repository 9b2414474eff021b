//! A store with faults on demand, for the black-box fault tests: it
//! delegates to a real store and can fail writes (an outage, or the next N
//! writes), slow every write down, and panic when asked about an
//! interaction id with a prefix (a poison command that kills its
//! aggregate; its writes are refused as a taken id, which is when an
//! aggregate asks).

use alpes_tracking::store::*;
use async_trait::async_trait;
use chrono::NaiveDate;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FaultyStore {
    pub inner: Arc<dyn EventStore>,
    /// While set, every write fails (retryable).
    pub down: AtomicBool,
    /// The next this-many writes fail (retryable).
    pub failing_writes: AtomicU32,
    /// Every write takes at least this many milliseconds (a slow store).
    pub write_delay_ms: AtomicU64,
    /// Interaction ids starting with this are refused by `write` (an id
    /// conflict), and the aggregate that then asks who owns them panics.
    pub panic_prefix: Option<&'static str>,
    /// Poison ids `write` refused: only a lookup after the conflict (the
    /// aggregate's) panics, not the ingest check before the command is
    /// accepted.
    pub conflicted: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Calls of `interaction_owners`: an aggregate looks its batch's ids
    /// up only after the store refused its group (a taken id).
    pub lookups: AtomicU32,
    /// Calls of `write` (commits).
    pub writes: AtomicU32,
    /// While set, the store is broken until a restart (like a poisoned
    /// embedded store after a full disk): writes fail, `needs_restart` says so.
    pub broken: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            failing_writes: AtomicU32::new(0),
            write_delay_ms: AtomicU64::new(0),
            conflicted: Default::default(),
            panic_prefix: None,
            lookups: AtomicU32::new(0),
            writes: AtomicU32::new(0),
            broken: AtomicBool::new(false),
        }
    }
}

impl FaultyStore {
    /// The aggregate looks ids up only after the store refused its group
    /// (a taken id): so a group holding a poison id is refused as if the
    /// id were the user's, which makes the aggregate ask, and panic.
    async fn refusing_poison(
        &self,
        batch: Arc<WriteBatch>,
        prefix: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let poison = |g: &AppendGroup| {
            g.events
                .iter()
                .find(|e| e.interaction_id.starts_with(prefix))
                .inspect(|e| {
                    if let Ok(mut c) = self.conflicted.lock() {
                        c.insert(e.interaction_id.clone());
                    }
                })
                .map(|e| AppendConflict::InteractionIdTaken {
                    interaction_id: e.interaction_id.clone(),
                    owner: g.user_id.clone(),
                })
        };
        let mut rest = WriteBatch {
            rejections: batch.rejections.clone(),
            ..WriteBatch::default()
        };
        rest.groups = batch
            .groups
            .iter()
            .filter(|g| poison(g).is_none())
            .cloned()
            .collect();
        let mut out = self.inner.write(Arc::new(rest)).await?;
        let mut written = std::mem::take(&mut out.groups).into_iter();
        for g in &batch.groups {
            out.groups.push(match poison(g) {
                Some(conflict) => GroupOutcome::Conflict(conflict),
                None => written
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("missing outcome".into()))?,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl EventStore for FaultyStore {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn needs_restart(&self) -> Option<String> {
        self.broken
            .load(Ordering::SeqCst)
            .then(|| "injected: the store refuses every write".to_string())
    }
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let delay = self.write_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Timeout("injected outage".into()));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected: poisoned".into()));
        }
        if self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        match self.panic_prefix {
            Some(prefix) => self.refusing_poison(batch, prefix).await,
            None => self.inner.write(batch).await,
        }
    }
    async fn interaction_owners(&self, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let after_conflict = self
            .conflicted
            .lock()
            .is_ok_and(|c| ids.iter().any(|id| c.contains(id)));
        if after_conflict {
            panic!("injected panic in an aggregate");
        }
        self.inner.interaction_owners(ids).await
    }
    async fn last_seq(&self, u: &str) -> Result<u64, StoreError> {
        self.inner.last_seq(u).await
    }
    async fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.interaction(id).await
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
