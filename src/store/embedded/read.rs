//! Reads of the journal and its indexes: an index (position, user, id,
//! target) gives positions, the position index gives each record's
//! location in the journal's files, and the record is read from there.
//!
//! A read sees only positions up to the committed head. A batch's entries
//! reach the memtables one after the other, and fjall makes them readable
//! as they go (a plain read sees everything; even a snapshot's instant can
//! move past a batch in progress when a flush installs a new version). So a
//! reader following an index (position, id, target) into the journal could
//! find a batch in part: an index entry whose journal entry is not there
//! yet. The head is stored (release) after the commit has put every entry
//! of the batch in place; each read loads it (acquire) first and ignores
//! every entry with a later position.

use super::journal::{Frame, Location};
use super::pending::Ix;
use super::{keys, Inner};
use crate::domain::InteractionTracked;
use crate::store::{JournalRecord, StoreError, StoredEvent, StoredRejection};
use chrono::NaiveDate;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::atomic::Ordering;

/// The position at the end of an id index value (`journal key, u64 pos`).
fn id_value_pos(v: &[u8]) -> Result<u64, StoreError> {
    let n = v
        .len()
        .checked_sub(8)
        .ok_or_else(|| keys::corrupt("interaction id index"))?;
    keys::u64_at(v, n, "interaction id index")
}

impl Inner {
    /// The last committed position: every entry up to it is readable.
    fn committed(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The event at a position an index (id, user, target) pointed to.
    fn event_at(&self, pos: u64) -> Result<StoredEvent, StoreError> {
        let v = self
            .index_get(Ix::Pos, &pos.to_be_bytes())?
            .ok_or_else(|| StoreError::Corrupt(format!("index entry {pos} without event")))?;
        match self.record(pos, &v)? {
            JournalRecord::Event(e) => Ok(e),
            JournalRecord::Rejection(_) => Err(StoreError::Corrupt(format!(
                "index entry {pos} is a rejection"
            ))),
        }
    }

    /// The record a position entry (a journal location) points to.
    fn record(&self, pos: u64, v: &[u8]) -> Result<JournalRecord, StoreError> {
        let loc = Location::decode(v).ok_or_else(|| keys::corrupt("position index value"))?;
        decode_record(self.records.read(pos, loc)?)
    }

    /// The id index value of `id` (`journal key, u64 pos`) and its
    /// position, if its event is committed: the one head check both id
    /// readers share.
    fn committed_id(&self, id: &str) -> Result<Option<(fjall::Slice, u64)>, StoreError> {
        let head = self.committed();
        let Some(v) = self.index_get(Ix::Ids, id.as_bytes())? else {
            return Ok(None);
        };
        let pos = id_value_pos(&v)?;
        Ok((pos <= head).then_some((v, pos)))
    }

    pub(super) fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        match self.committed_id(id)? {
            Some((_, pos)) => self.event_at(pos).map(Some),
            None => Ok(None),
        }
    }

    /// The user holding an interaction id, from the id index alone (its
    /// value starts with the journal key: `u16 len, user, seq`).
    pub(super) fn interaction_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let Some((v, _)) = self.committed_id(id)? else {
            return Ok(None);
        };
        Ok(Some(
            keys::take_str(&v, "interaction id index")?.0.to_owned(),
        ))
    }

    pub(super) fn user_events(
        &self,
        user: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let head = self.committed();
        let from = keys::journal_key(user, first)?;
        let to = keys::journal_key(user, u64::MAX)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let entries = self.index_range(Ix::Journal, (Included(&from), Included(&to)), false, limit);
        for entry in entries.take(limit) {
            let pos = keys::u64_at(&entry?.1, 0, "journal value")?;
            // A user's events are in one batch's order: later ones too.
            if pos > head {
                break;
            }
            out.push(self.event_at(pos)?);
        }
        Ok(out)
    }

    pub(super) fn recent(
        &self,
        before_pos: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let head = self.committed();
        let end = match before_pos {
            Some(p) if p <= head => Excluded(p.to_be_bytes()),
            _ => Included(head.to_be_bytes()),
        };
        let end = end.as_ref().map(|k| &k[..]);
        let mut out = Vec::with_capacity(limit.min(1024));
        // Rejections are skipped: `limit` entries may not be enough.
        for entry in self.index_range(Ix::Pos, (Unbounded, end), true, usize::MAX) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            if let JournalRecord::Event(e) =
                self.record(keys::u64_at(&k, 0, "position key")?, &v)?
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub(super) fn by_target(
        &self,
        target: &str,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let start = keys::target_key(target, from, 0)?;
        let end = keys::target_key(target, to, u64::MAX)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let head = self.committed();
        let range = (Included(&start[..]), Included(&end[..]));
        let mut entries = self.index_range(Ix::Target, range, false, limit);
        while out.len() < limit {
            let Some(entry) = entries.next() else { break };
            let pos = keys::target_key_pos(&entry?.0)?;
            if pos > head {
                continue;
            }
            out.push(self.event_at(pos)?);
        }
        Ok(out)
    }

    pub(super) fn scan(
        &self,
        after_pos: u64,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let head = self.committed();
        let Some(first) = after_pos.checked_add(1).filter(|f| *f <= head) else {
            return Ok(Vec::new());
        };
        let (first, head) = (first.to_be_bytes(), head.to_be_bytes());
        self.index_range(Ix::Pos, (Included(&first), Included(&head)), false, limit)
            .take(limit)
            .map(|entry| {
                let (k, v) = entry?;
                self.record(keys::u64_at(&k, 0, "position key")?, &v)
            })
            .collect()
    }
}

/// A journal record as the store's readers see it.
pub(super) fn decode_record(f: Frame) -> Result<JournalRecord, StoreError> {
    match f.tag {
        keys::POS_EVENT_COMPACT => Ok(JournalRecord::Event(StoredEvent::new(
            f.pos,
            InteractionTracked::decode_compact(&f.payload)?,
        ))),
        keys::POS_EVENT => Ok(JournalRecord::Event(StoredEvent::new(
            f.pos,
            InteractionTracked::decode(&f.payload)?,
        ))),
        keys::POS_REJECTION => Ok(JournalRecord::Rejection(StoredRejection {
            pos: f.pos,
            rejection: keys::decode_rejection(&f.payload)?,
        })),
        _ => Err(keys::corrupt("journal record tag")),
    }
}

/// Every record, for tests that compare what a store holds.
#[cfg(test)]
pub(super) fn tests_scan_all(s: &Inner) -> Vec<JournalRecord> {
    s.scan(0, usize::MAX).unwrap()
}
