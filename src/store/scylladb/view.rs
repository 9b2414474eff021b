//! What a worker knows of a user when it decides a batch: the user's head,
//! read fresh for every batch (never a copy kept from an earlier one: the
//! user may have been another worker's meanwhile), and, only for what the
//! head cannot tell, the user's id and key rows.
//!
//! Heads are read in batches: the aggregates of a worker ask at about the
//! same time, and one request for many users (`user_id IN ?`) costs the
//! server far less than one request each (`loadtest/scenarios/cql-rowcost.sh`).
//! A reader task takes what is queued, up to [`READ_BATCH`] users a
//! request, at most [`IN_FLIGHT`] requests at once.

use super::head::{id_row, key_row, UserHead};
use super::statements::Statements;
use super::{exec_err, rows_err, ScyllaStore};
use crate::domain::decide::{DailyKey, UserView};
use crate::store::StoreError;
use scylla::client::session::Session;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Users per head request.
const READ_BATCH: usize = 64;
/// Head requests in flight at once.
const IN_FLIGHT: usize = 16;

/// A user's head as stored: its last seq and state (`None`: no event).
pub type Head = Option<(u64, Arc<UserHead>)>;

type Reply = oneshot::Sender<Result<Head, StoreError>>;

/// The batched head reads (see the module docs).
pub struct HeadReader {
    tx: mpsc::UnboundedSender<(String, Reply)>,
}

impl HeadReader {
    pub fn start(session: Arc<Session>, st: Arc<Statements>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Reply)>();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut queued = Vec::with_capacity(READ_BATCH);
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                if rx.recv_many(&mut queued, READ_BATCH).await == 0 {
                    return; // the store was dropped
                }
                let batch = std::mem::take(&mut queued);
                let (session, st) = (session.clone(), st.clone());
                tokio::spawn(async move {
                    read_heads(&session, &st, batch).await;
                    drop(permit);
                });
            }
        });
        HeadReader { tx }
    }

    async fn get(&self, user: &str) -> Result<Head, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((user.to_owned(), tx))
            .map_err(|_| StoreError::Unavailable("the head reader stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the head reader stopped".into()))?
    }
}

async fn read_heads(session: &Session, st: &Statements, batch: Vec<(String, Reply)>) {
    let mut users: Vec<&str> = batch.iter().map(|(u, _)| u.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let result = async {
        let rows = session
            .execute_unpaged(&st.head_get_many, (&users,))
            .await
            .map_err(exec_err)?
            .into_rows_result()
            .map_err(rows_err)?;
        let mut found: HashMap<String, (u64, Arc<UserHead>)> = HashMap::new();
        for row in rows
            .rows::<(String, Option<i64>, Option<Vec<u8>>)>()
            .map_err(rows_err)?
        {
            let (user, seq, state) = row.map_err(rows_err)?;
            let head = match state {
                Some(b) => UserHead::decode(&b)?,
                None => UserHead::default(),
            };
            found.insert(user, (seq.unwrap_or(0).max(0) as u64, Arc::new(head)));
        }
        Ok::<_, StoreError>(found)
    }
    .await;
    match result {
        Ok(found) => {
            for (user, reply) in batch {
                let _ = reply.send(Ok(found.get(&user).cloned()));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let retryable = e.is_retryable();
            for (_, reply) in batch {
                let again = if retryable {
                    StoreError::Unavailable(text.clone())
                } else {
                    StoreError::Corrupt(text.clone())
                };
                let _ = reply.send(Err(again));
            }
        }
    }
}

/// The heads this process read or wrote last, by user (bounded: a miss
/// costs one read at commit).
#[derive(Default)]
pub struct KnownHeads(Mutex<HashMap<String, Arc<UserHead>>>);

impl KnownHeads {
    /// The user's head if the one known is at `last_seq`.
    pub fn get(&self, user: &str, last_seq: u64) -> Option<UserHead> {
        let known = self.0.lock().ok()?;
        let h = known.get(user)?;
        (h.last_seq() == last_seq).then(|| UserHead::clone(h))
    }

    pub fn put(&self, user: &str, head: UserHead) {
        self.put_arc(user, Arc::new(head));
    }

    fn put_arc(&self, user: &str, head: Arc<UserHead>) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= 50_000 {
                known.clear();
            }
            known.insert(user.to_owned(), head);
        }
    }
}

/// The user's stored head (batched with other users' reads).
pub async fn head(s: &ScyllaStore, user: &str) -> Result<Head, StoreError> {
    s.heads.get(user).await
}

/// The view of a batch (see the module docs).
pub async fn view(
    s: &ScyllaStore,
    user: &str,
    ids: &[String],
    keys: &[DailyKey],
) -> Result<UserView, StoreError> {
    let Some((last_seq, head)) = head(s, user).await? else {
        s.known_heads.put(user, UserHead::default());
        return Ok(UserView::default());
    };
    let (mut view, missing) = head.resolve(ids, keys);
    view.last_seq = last_seq;
    s.known_heads.put_arc(user, head);
    if missing.is_empty() {
        return Ok(view);
    }
    // Rows at or below the head's seq are the user's; above it, a commit
    // cut short (its command comes again and is decided again).
    let mut wanted: HashMap<String, Option<&DailyKey>> = HashMap::new();
    for id in &missing.ids {
        wanted.insert(id_row(id), None);
    }
    for k in &missing.keys {
        wanted.insert(key_row(k), Some(k));
    }
    let names: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let rows = s
        .session
        .execute_unpaged(&s.st.user_rows_get, (user, &names))
        .await
        .map_err(exec_err)?
        .into_rows_result()
        .map_err(rows_err)?;
    for row in rows.rows::<(String, Option<i64>)>().map_err(rows_err)? {
        let (k, seq) = row.map_err(rows_err)?;
        if seq.unwrap_or(i64::MAX).max(0) as u64 > last_seq {
            continue;
        }
        match wanted.get(&k) {
            Some(Some(key)) => {
                view.known_keys.insert((*key).clone());
            }
            Some(None) => {
                view.own_ids.insert(k[1..].to_owned());
            }
            None => {}
        }
    }
    Ok(view)
}
