//! Reads of the journal and its indexes.

use super::{db_err, keys, Inner};
use crate::domain::InteractionTracked;
use crate::store::{JournalRecord, StoreError, StoredEvent, StoredRejection};
use chrono::NaiveDate;
use std::ops::Bound;

/// A journal value: `u64 pos`, then the event blob.
fn decode_event(v: &[u8]) -> Result<StoredEvent, StoreError> {
    let pos = keys::u64_at(v, 0, "journal value")?;
    let event = InteractionTracked::decode(v.get(8..).unwrap_or_default())?;
    Ok(StoredEvent { pos, event })
}

impl Inner {
    fn event_at(&self, journal_key: &[u8]) -> Result<StoredEvent, StoreError> {
        let v = self
            .journal
            .get(journal_key)
            .map_err(db_err)?
            .ok_or_else(|| StoreError::Corrupt("index entry without journal entry".into()))?;
        decode_event(&v)
    }

    /// Decodes a position index entry.
    fn record(&self, pos: u64, v: &[u8]) -> Result<JournalRecord, StoreError> {
        match v.split_first() {
            Some((&keys::POS_EVENT, jk)) => Ok(JournalRecord::Event(self.event_at(jk)?)),
            Some((&keys::POS_REJECTION, blob)) => Ok(JournalRecord::Rejection(StoredRejection {
                pos,
                rejection: keys::decode_rejection(blob)?,
            })),
            _ => Err(keys::corrupt("position index value")),
        }
    }

    pub(super) fn interaction(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let Some(v) = self.ids.get(id).map_err(db_err)? else {
            return Ok(None);
        };
        let jk = v
            .len()
            .checked_sub(8)
            .and_then(|n| v.get(..n))
            .ok_or_else(|| keys::corrupt("interaction id index"))?;
        self.event_at(jk).map(Some)
    }

    /// The user holding an interaction id, from the id index alone (its
    /// value starts with the journal key: `u16 len, user, seq`).
    pub(super) fn interaction_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let Some(v) = self.ids.get(id).map_err(db_err)? else {
            return Ok(None);
        };
        let len = v
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| keys::corrupt("interaction id index"))?;
        let user = v
            .get(2..2 + len)
            .ok_or_else(|| keys::corrupt("interaction id index"))?;
        String::from_utf8(user.to_vec())
            .map(Some)
            .map_err(|_| keys::corrupt("interaction id index"))
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
        let from = keys::journal_key(user, first)?;
        let to = keys::journal_key(user, u64::MAX)?;
        self.journal
            .range(from..=to)
            .take(limit)
            .map(|g| decode_event(&g.value().map_err(db_err)?))
            .collect()
    }

    pub(super) fn recent(
        &self,
        before_pos: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let end = match before_pos {
            Some(p) => Bound::Excluded(p.to_be_bytes()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for g in self.pos.range((Bound::Unbounded, end)).rev() {
            if out.len() >= limit {
                break;
            }
            let v = g.value().map_err(db_err)?;
            if let Some((&keys::POS_EVENT, jk)) = v.split_first() {
                out.push(self.event_at(jk)?);
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
        for g in self.target.range(start..=end).take(limit) {
            let pos = keys::target_key_pos(&g.key().map_err(db_err)?)?;
            let v = self
                .pos
                .get(pos.to_be_bytes())
                .map_err(db_err)?
                .ok_or_else(|| StoreError::Corrupt(format!("by-target entry {pos} unknown")))?;
            match self.record(pos, &v)? {
                JournalRecord::Event(e) => out.push(e),
                JournalRecord::Rejection(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "by-target entry {pos} is a rejection"
                    )))
                }
            }
        }
        Ok(out)
    }

    pub(super) fn scan(
        &self,
        after_pos: u64,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let Some(first) = after_pos.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.pos
            .range(first.to_be_bytes()..)
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner().map_err(db_err)?;
                self.record(keys::u64_at(&k, 0, "position key")?, &v)
            })
            .collect()
    }
}
