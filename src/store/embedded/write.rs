//! The write path: conflict checks, the journal's frames (the one durable
//! write of a call) and the indexes derived from them.

use super::pending::{Ix, Staged};
use super::seqs::SeqCache;
use super::{db_err, journal, keys, Inner};
use crate::hash::{Map, Set};
use crate::store::{
    AppendConflict, AppendGroup, GroupOutcome, Numbering, StoreError, WriteBatch, WriteOutcome,
};
use fjall::OwnedWriteBatch;
use std::sync::atomic::Ordering;

/// Rejects a batch whose groups are not what `AppendGroup` promises (event
/// of another user, seqs not `expected_last_seq + 1, + 2, ...`, or `1, 2,
/// ...` for a group the store numbers). That is a caller bug, not a
/// concurrency conflict, so it is refused as a whole with
/// `StoreError::Corrupt` and nothing is written (a `SeqMismatch` would make
/// the aggregate reload and retry the same bad group forever).
fn validate(batch: &WriteBatch) -> Result<(), StoreError> {
    for g in &batch.groups {
        let after = match g.numbering {
            Numbering::Expected => g.expected_last_seq,
            Numbering::Store => 0,
        };
        for (i, ev) in g.events.iter().enumerate() {
            let want = after.checked_add(i as u64 + 1);
            if ev.user_id != g.user_id || Some(ev.seq) != want {
                return Err(StoreError::Corrupt(format!(
                    "invalid append group for user {:?}: event #{} is ({:?}, seq {}), expected seq {:?}",
                    g.user_id,
                    i + 1,
                    ev.user_id,
                    ev.seq,
                    want
                )));
            }
        }
    }
    Ok(())
}

impl Inner {
    /// The cache of recent users' last sequence numbers. A panic while it
    /// was held cannot have left a wrong value (each update is one map
    /// insert), so a poisoned lock is taken over rather than failing.
    fn seq_cache(&self) -> std::sync::MutexGuard<'_, SeqCache> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's last sequence number: from the cache when the user was
    /// written recently, else from the keyspace (not cached: this may run
    /// outside the writer lock, see [`super::seqs`]).
    pub(super) fn stored_last_seq(&self, user: &str) -> Result<u64, StoreError> {
        self.last_seq_of(user, false)
    }

    /// As [`Self::stored_last_seq`], for the writer-lock holder only: a
    /// value read from the keyspace is current and goes into the cache.
    fn locked_last_seq(&self, user: &str) -> Result<u64, StoreError> {
        self.last_seq_of(user, true)
    }

    fn last_seq_of(&self, user: &str, fill: bool) -> Result<u64, StoreError> {
        if let Some(&seq) = self.seq_cache().get(user) {
            return Ok(seq);
        }
        let seq = match self.index_get(Ix::LastSeq, user.as_bytes())? {
            Some(v) => keys::u64_at(&v, 0, "last seq")?,
            None => 0,
        };
        if fill {
            self.seq_cache().put(user, seq);
        }
        Ok(seq)
    }

    /// The first interaction id of the group already stored, appended earlier
    /// in this batch, or repeated within the group.
    fn id_conflict(
        &self,
        g: &AppendGroup,
        taken: &Map<&str, &str>,
    ) -> Result<Option<AppendConflict>, StoreError> {
        let conflict = |id: &str, owner: &str| {
            Ok(Some(AppendConflict::InteractionIdTaken {
                interaction_id: id.to_owned(),
                owner: owner.to_owned(),
            }))
        };
        let mut own = Set::default();
        for ev in &g.events {
            let id = ev.interaction_id.as_str();
            if let Some(owner) = taken.get(id) {
                return conflict(id, owner);
            }
            if g.events.len() > 1 && !own.insert(id) {
                return conflict(id, &g.user_id);
            }
            if let Some(v) = self.index_get(Ix::Ids, id.as_bytes())? {
                return conflict(id, keys::take_str(&v, "interaction id index")?.0);
            }
        }
        Ok(None)
    }

    pub(super) fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, StoreError> {
        validate(batch)?;
        let _writer = self
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("store writer lock poisoned".into()))?;
        let mut head = self.head.load(Ordering::Acquire);
        let events: usize = batch.groups.iter().map(|g| g.events.len()).sum();
        let records = events + batch.rejections.len();
        // The indexes; durable through the journal, not by themselves
        // (see the module docs of the parent: "Crash safety"). Those of
        // events are staged for [`super::pending`] (which derives the last
        // seqs from them), the rejections' go to the LSM in one batch.
        let mut fb = OwnedWriteBatch::with_capacity(self.db.clone(), batch.rejections.len())
            .durability(None);
        let mut staged = Staged::with_capacity(4 * events);
        let mut frames = journal::Pending::with_capacity(320 * records, records);
        let mut out = WriteOutcome {
            groups: Vec::with_capacity(batch.groups.len()),
            rejections: Vec::with_capacity(batch.rejections.len()),
        };
        // Users and ids appended earlier in this batch (not yet readable).
        let mut seqs: Map<&str, u64> =
            Map::with_capacity_and_hasher(batch.groups.len(), Default::default());
        let mut taken: Map<&str, &str> = Map::with_capacity_and_hasher(events, Default::default());

        for g in &batch.groups {
            let actual = match seqs.get(g.user_id.as_str()) {
                Some(s) => *s,
                None => self.locked_last_seq(&g.user_id)?,
            };
            if g.numbering == Numbering::Expected && actual != g.expected_last_seq {
                out.groups
                    .push(GroupOutcome::Conflict(AppendConflict::SeqMismatch {
                        expected: g.expected_last_seq,
                        actual,
                    }));
                continue;
            }
            if let Some(c) = self.id_conflict(g, &taken)? {
                out.groups.push(GroupOutcome::Conflict(c));
                continue;
            }
            // Either numbering follows `actual` here (validated above): as
            // expected, or as the store numbers it, under this lock.
            let first_pos = head + 1;
            let first_seq = actual + 1;
            for (seq, ev) in (first_seq..).zip(&g.events) {
                head += 1;
                frames.push(head, keys::POS_EVENT_COMPACT, |b| {
                    Ok(ev.encode_compact_at(seq, b)?)
                })?;
                index_event(&mut staged, ev, seq, head)?;
                taken.insert(&ev.interaction_id, &g.user_id);
            }
            if !g.events.is_empty() {
                seqs.insert(&g.user_id, actual + g.events.len() as u64);
            }
            out.groups.push(GroupOutcome::Appended {
                first_pos,
                first_seq,
            });
        }

        let mut commands: Set<&str> = Set::default();
        for r in &batch.rejections {
            let id = r.command_id.as_str();
            if commands.contains(id) || self.rejections.contains_key(id).map_err(db_err)? {
                out.rejections.push(None);
                continue;
            }
            head += 1;
            frames.push(head, keys::POS_REJECTION, |b| {
                keys::encode_rejection_into(b, r)
            })?;
            fb.insert(&self.rejections, id, head.to_be_bytes());
            commands.insert(id);
            out.rejections.push(Some(head));
        }

        if frames.is_empty() {
            return Ok(out);
        }
        // The journal's frames: durable now, or, when syncs are deferred,
        // at the next sync point, before anything derived from them is
        // (see the parent's "Crash safety"). A rejection's command id goes
        // to the LSM, which may flush it at any time: a commit holding one
        // is synced now.
        let sync = !batch.rejections.is_empty() || !self.defer_syncs.load(Ordering::Acquire);
        let first = self.head.load(Ordering::Acquire) + 1;
        let locations = self
            .records
            .append(&frames, sync)
            .map_err(|e| self.journal_failed(e))?;
        for (pos, loc) in (first..).zip(&locations) {
            staged.put(Ix::Pos, &pos.to_be_bytes(), &loc.encode());
        }
        // The indexes, in memory (durable at the next index checkpoint,
        // else derived again from the journal at open). A failure here
        // leaves durable events unindexed: only a reopen, which derives
        // them, may write again.
        if !batch.rejections.is_empty() {
            fb.commit().map_err(|e| self.index_failed(e))?;
        }
        let unsealed = self.pending.commit(staged);
        self.head.store(head, Ordering::Release);
        // Past the bound, ingest now (the write is durable and readable
        // already: a failure only leaves the entries in memory longer).
        if let Err(e) = self.ingest_if_over(unsealed) {
            crate::internal_events::store_error("index_ingest", &e);
        }
        // Still under the writer lock: the cache never lags the keyspace
        // for the next append check.
        let mut cache = self.seq_cache();
        for (user, seq) in seqs {
            cache.put(user, seq);
        }
        Ok(out)
    }
}

/// The write-once index entries of one event numbered `seq` at `pos` (the
/// position entry, which needs the event's journal location, and the
/// user's last seq, one per user and batch, are the caller's). The keys
/// are built in one buffer, reused: [`Staged::put`] copies them.
pub(super) fn index_event(
    staged: &mut Staged,
    ev: &crate::domain::InteractionTracked,
    seq: u64,
    pos: u64,
) -> Result<(), StoreError> {
    let pos_bytes = pos.to_be_bytes();
    let mut buf = Vec::with_capacity(ev.user_id.len().max(ev.target.id.len()) + 24);
    keys::journal_key_into(&mut buf, &ev.user_id, seq)?;
    staged.put(Ix::Journal, &buf, &pos_bytes);
    // The id's value: the journal key, then the position.
    buf.extend_from_slice(&pos_bytes);
    staged.put(Ix::Ids, ev.interaction_id.as_bytes(), &buf);
    buf.clear();
    keys::target_key_into(&mut buf, &ev.target.id, ev.occurred_at.date_naive(), pos)?;
    staged.put(Ix::Target, &buf, &[]);
    Ok(())
}
