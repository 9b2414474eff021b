//! The projection math, shared by every store and by `tracking verify`.
//!
//! [`Recount`] folds journal records into the three read models from
//! scratch. Stores apply the same functions incrementally ([`daily_key`],
//! [`status_day`], [`UserStats::fold`]) so the incremental tables and the
//! recount cannot disagree on what a record contributes.

use crate::domain::{InteractionTracked, InteractionType};
use crate::store::{DailyStat, JournalRecord, StatusStat, UserStats};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The daily-stats bucket an event counts in: (day of `occurred_at`, type, campaign).
pub type DailyKey = (NaiveDate, InteractionType, Option<String>);

pub fn daily_key(ev: &InteractionTracked) -> DailyKey {
    (
        ev.occurred_at.date_naive(),
        ev.interaction_type,
        ev.campaign_id.clone(),
    )
}

/// The status-projection day of a record: the day it was recorded.
pub fn status_day(record: &JournalRecord) -> NaiveDate {
    match record {
        JournalRecord::Event(e) => e.event.recorded_or_occurred().date_naive(),
        JournalRecord::Rejection(r) => r.rejection.rejected_at.date_naive(),
    }
}

impl UserStats {
    /// A user's stats after their first event.
    pub fn first(ev: &InteractionTracked) -> Self {
        let mut s = UserStats {
            user_id: ev.user_id.clone(),
            total: 0,
            clicks: 0,
            views: 0,
            likes: 0,
            last_seq: 0,
            first_occurred_at: ev.occurred_at,
            last_occurred_at: ev.occurred_at,
        };
        s.fold(ev);
        s
    }

    /// Adds one event of this user.
    pub fn fold(&mut self, ev: &InteractionTracked) {
        self.total += 1;
        match ev.interaction_type {
            InteractionType::Click => self.clicks += 1,
            InteractionType::View => self.views += 1,
            InteractionType::Like => self.likes += 1,
        }
        self.last_seq = self.last_seq.max(ev.seq);
        self.first_occurred_at = self.first_occurred_at.min(ev.occurred_at);
        self.last_occurred_at = self.last_occurred_at.max(ev.occurred_at);
    }
}

/// All projections recomputed from the journal.
#[derive(Debug, Default)]
pub struct Recount {
    daily: BTreeMap<DailyKey, (u64, HashSet<String>)>,
    status: BTreeMap<NaiveDate, (u64, u64)>,
    users: HashMap<String, UserStats>,
    /// Per user, the sequence numbers seen (to check gap-freeness).
    seqs: HashMap<String, Vec<u64>>,
    ids: HashSet<String>,
    duplicate_ids: Vec<String>,
    /// Records come in no particular order across a user's partitions
    /// (a full scan of a distributed journal): seqs are checked sorted.
    unordered: bool,
}

impl Recount {
    /// A recount fed in no particular order (see `journal_violations`).
    pub fn unordered() -> Self {
        Recount {
            unordered: true,
            ..Default::default()
        }
    }

    pub fn add(&mut self, record: &JournalRecord) {
        let day = status_day(record);
        match record {
            JournalRecord::Event(e) => {
                let ev = &e.event;
                let bucket = self.daily.entry(daily_key(ev)).or_default();
                bucket.0 += 1;
                bucket.1.insert(ev.user_id.clone());
                self.status.entry(day).or_default().0 += 1;
                self.users
                    .entry(ev.user_id.clone())
                    .and_modify(|s| s.fold(ev))
                    .or_insert_with(|| UserStats::first(ev));
                self.seqs
                    .entry(ev.user_id.clone())
                    .or_default()
                    .push(ev.seq);
                if !self.ids.insert(ev.interaction_id.clone()) {
                    self.duplicate_ids.push(ev.interaction_id.clone());
                }
            }
            JournalRecord::Rejection(_) => self.status.entry(day).or_default().1 += 1,
        }
    }

    pub fn daily(&self) -> Vec<DailyStat> {
        self.daily
            .iter()
            .map(|((day, ty, campaign), (count, users))| DailyStat {
                day: *day,
                interaction_type: *ty,
                campaign_id: campaign.clone(),
                count: *count,
                unique_users: users.len() as u64,
            })
            .collect()
    }

    pub fn status(&self) -> Vec<StatusStat> {
        self.status
            .iter()
            .map(|(day, (accepted, rejected))| StatusStat {
                day: *day,
                accepted: *accepted,
                rejected: *rejected,
            })
            .collect()
    }

    pub fn users(&self) -> &HashMap<String, UserStats> {
        &self.users
    }

    pub fn events(&self) -> usize {
        self.ids.len() + self.duplicate_ids.len()
    }

    /// Journal invariants: unique interaction ids, per-user seqs 1..=n in
    /// journal order. Returns one line per violation.
    pub fn journal_violations(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .duplicate_ids
            .iter()
            .map(|id| format!("interaction id {id} is stored more than once"))
            .collect();
        for (user, seqs) in &self.seqs {
            let mut sorted;
            let seqs = if self.unordered {
                sorted = seqs.clone();
                sorted.sort_unstable();
                &sorted
            } else {
                seqs
            };
            if let Some((i, s)) = seqs.iter().enumerate().find(|(i, s)| **s != *i as u64 + 1) {
                out.push(format!(
                    "user {user}: event #{} has seq {s}, expected {}",
                    i + 1,
                    i + 1
                ));
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RejectReason, Rejection, Target, EVENT_SCHEMA_VERSION};
    use crate::store::{StoredEvent, StoredRejection};
    use chrono::{TimeZone, Utc};

    fn ev(pos: u64, user: &str, seq: u64, ty: InteractionType, id: &str) -> JournalRecord {
        JournalRecord::Event(StoredEvent::new(
            pos,
            InteractionTracked {
                schema_version: EVENT_SCHEMA_VERSION,
                interaction_id: id.into(),
                user_id: user.into(),
                seq,
                interaction_type: ty,
                target: Target {
                    id: "p".into(),
                    kind: "post".into(),
                },
                campaign_id: Some("c".into()),
                occurred_at: Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(),
                affiliate_id: None,
                correlation_id: None,
                recorded_at: None,
            },
        ))
    }

    #[test]
    fn counts_and_unique_users() {
        let mut r = Recount::default();
        r.add(&ev(1, "a", 1, InteractionType::Click, "1"));
        r.add(&ev(2, "a", 2, InteractionType::Click, "2"));
        r.add(&ev(3, "b", 1, InteractionType::Click, "3"));
        r.add(&JournalRecord::Rejection(StoredRejection {
            pos: 4,
            rejection: Rejection {
                command_id: "x".into(),
                reason: RejectReason::Malformed,
                detail: String::new(),
                rejected_at: Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap(),
            },
        }));
        let d = r.daily();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].count, d[0].unique_users), (3, 2));
        let s = r.status();
        assert_eq!((s[0].accepted, s[0].rejected), (3, 1));
        assert_eq!(r.users()["a"].clicks, 2);
        assert!(r.journal_violations().is_empty());
    }

    #[test]
    fn finds_gaps_and_duplicate_ids() {
        let mut r = Recount::default();
        r.add(&ev(1, "a", 1, InteractionType::Like, "1"));
        r.add(&ev(2, "a", 3, InteractionType::Like, "1"));
        let v = r.journal_violations();
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
