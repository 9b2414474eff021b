//! A user's head: the state the ScyllaDB store keeps in one row per user
//! (`users`, `k = ''`), as of the user's last seq, so that deciding a
//! batch usually takes one read of one row.
//!
//! It holds the user's statistics, the last [`RECENT_IDS`] events (id,
//! seq and place in the log) and every daily key the user has on a day at
//! or after `key_floor` (a week before the latest day seen). A batch's ids
//! and keys are answered from it whenever it can tell; only what it
//! cannot (an id of a user with more events than the window, a key on a
//! day before the floor) is looked up in the user's id and key rows. Those
//! rows are written when an id or a key leaves the head (and for a key on
//! a day already below the floor), in the same mutation as the head that
//! no longer holds it: head and rows together always hold every id and
//! every key, and a user with few events has no row but its head.
//!
//! A pure fold of the user's events: the same events give the same head,
//! byte for byte, whoever writes it (see `write.rs`).

use crate::domain::decide::{DailyKey, UserView};
use crate::domain::InteractionTracked;
use crate::store::{StoreError, UserStats};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// Ids of the user's latest events kept in the head.
pub const RECENT_IDS: usize = 32;
/// Days before the latest day seen whose keys the head keeps.
pub const KEY_DAYS: u64 = 7;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserHead {
    /// `None` until the user's first event.
    pub stats: Option<UserStats>,
    /// The latest events, oldest first.
    pub recent: VecDeque<Recent>,
    pub key_floor: Option<NaiveDate>,
    /// Every key of the user with `day >= key_floor`.
    pub keys: BTreeSet<DailyKey>,
}

/// One of the user's latest events: its id, seq and place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    pub id: String,
    pub seq: u64,
    pub partition: u32,
    pub major: u64,
    pub minor: u64,
}

/// What adding an event moved out of the head (rows to write with it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evicted {
    /// The event that left the latest ones.
    pub event: Option<Recent>,
    /// Keys below the floor: pruned from the head, or the event's own
    /// (its day already below the floor) when it is its first there.
    pub keys: Vec<DailyKey>,
}

/// What the head could not answer for a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Missing {
    pub ids: Vec<String>,
    pub keys: Vec<DailyKey>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.keys.is_empty()
    }
}

impl UserHead {
    pub fn last_seq(&self) -> u64 {
        self.stats.as_ref().map_or(0, |s| s.last_seq)
    }

    fn total(&self) -> u64 {
        self.stats.as_ref().map_or(0, |s| s.total)
    }

    /// Adds the user's next event (`seq = last_seq + 1`), its command's
    /// place in the log, and whether it is the user's first on its key;
    /// returns what left the head (to be written as rows).
    pub fn apply(
        &mut self,
        e: &InteractionTracked,
        at: crate::domain::position::Source,
        first_of_key: bool,
    ) -> Evicted {
        let mut out = Evicted::default();
        match &mut self.stats {
            Some(s) => s.fold(e),
            None => self.stats = Some(UserStats::first(e)),
        }
        if self.recent.len() == RECENT_IDS {
            out.event = self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            id: e.interaction_id.clone(),
            seq: e.seq,
            partition: at.partition,
            major: at.position.major,
            minor: at.position.minor,
        });
        let key = DailyKey::of(e);
        let latest = self.keys.iter().map(|k| k.day).max().unwrap_or(key.day);
        let floor = latest.max(key.day) - Days::new(KEY_DAYS);
        let floor = self.key_floor.map_or(floor, |f| f.max(floor));
        if key.day >= floor {
            self.keys.insert(key);
        } else if first_of_key {
            out.keys.push(key);
        }
        let (keep, pruned): (BTreeSet<DailyKey>, BTreeSet<DailyKey>) =
            std::mem::take(&mut self.keys)
                .into_iter()
                .partition(|k| k.day >= floor);
        self.keys = keep;
        out.keys.extend(pruned);
        self.key_floor = Some(floor);
        out
    }

    /// The view of a batch as far as the head tells, and what it cannot.
    pub fn resolve(&self, ids: &[String], keys: &[DailyKey]) -> (UserView, Missing) {
        let mut view = UserView {
            last_seq: self.last_seq(),
            ..Default::default()
        };
        let mut missing = Missing::default();
        if self.stats.is_none() {
            return (view, missing);
        }
        let all_ids_here = self.total() <= RECENT_IDS as u64;
        for id in ids {
            if self.recent.iter().any(|r| r.id == *id) {
                view.own_ids.insert(id.clone());
            } else if !all_ids_here && !missing.ids.contains(id) {
                missing.ids.push(id.clone());
            }
        }
        for key in keys {
            match self.key_floor {
                Some(floor) if key.day >= floor => {
                    if self.keys.contains(key) {
                        view.known_keys.insert(key.clone());
                    }
                }
                _ => {
                    if !missing.keys.contains(key) {
                        missing.keys.push(key.clone());
                    }
                }
            }
        }
        (view, missing)
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        rmp_serde::to_vec_named(self)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a user head: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("cannot decode a user head: {e}")))
    }
}

/// The clustering key of a user's id row.
pub fn id_row(id: &str) -> String {
    format!("i{id}")
}

/// The clustering key of a user's key row.
pub fn key_row(k: &DailyKey) -> String {
    let day = super::day_num(k.day);
    match &k.campaign_id {
        Some(c) => format!("d{day}:{}:{c}", k.interaction_type.as_str()),
        None => format!("d{day}:{}", k.interaction_type.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InteractionType, Target, EVENT_SCHEMA_VERSION};
    use chrono::{TimeZone, Utc};

    fn ev(seq: u64, day: u32, ty: InteractionType) -> InteractionTracked {
        let at = Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap();
        InteractionTracked {
            schema_version: EVENT_SCHEMA_VERSION,
            interaction_id: format!("i{seq}"),
            user_id: "u".into(),
            seq,
            interaction_type: ty,
            target: Target {
                id: "t".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c".into()),
            occurred_at: at,
            affiliate_id: None,
            correlation_id: None,
            recorded_at: Some(at),
        }
    }

    fn at(n: u64) -> crate::domain::position::Source {
        crate::domain::position::Source {
            partition: 1,
            position: crate::domain::position::Position::new(7, n, 0),
        }
    }

    fn head_of(events: &[InteractionTracked]) -> UserHead {
        let mut h = UserHead::default();
        for e in events {
            h.apply(e, at(e.seq), true);
        }
        h
    }

    #[test]
    fn a_new_user_needs_no_lookup() {
        let (view, missing) = UserHead::default().resolve(&["a".into()], &[]);
        assert_eq!(view, UserView::default());
        assert!(missing.is_empty());
    }

    #[test]
    fn a_small_user_is_answered_from_the_head_alone() {
        let events: Vec<_> = (1..=5).map(|s| ev(s, 20, InteractionType::Click)).collect();
        let h = head_of(&events);
        assert_eq!(h.last_seq(), 5);
        let key = DailyKey::of(&events[0]);
        let other = DailyKey::of(&ev(9, 21, InteractionType::View));
        let (view, missing) = h.resolve(&["i3".into(), "new".into()], &[key.clone(), other]);
        assert_eq!(view.last_seq, 5);
        assert_eq!(view.own_ids, ["i3".to_string()].into());
        assert_eq!(view.known_keys, [key].into());
        assert!(missing.is_empty());
    }

    #[test]
    fn ids_older_than_the_window_and_keys_before_the_floor_are_looked_up() {
        let events: Vec<_> = (1..=40).map(|s| ev(s, 25, InteractionType::Like)).collect();
        let h = head_of(&events);
        assert_eq!(h.recent.len(), RECENT_IDS);
        let old_day = DailyKey::of(&ev(1, 2, InteractionType::Like));
        let (view, missing) = h.resolve(
            &["i1".into(), "i40".into(), "x".into()],
            std::slice::from_ref(&old_day),
        );
        assert_eq!(view.own_ids, ["i40".to_string()].into());
        assert_eq!(missing.ids, vec!["i1".to_string(), "x".to_string()]);
        assert_eq!(missing.keys, vec![old_day]);
    }

    #[test]
    fn the_floor_follows_the_latest_day_and_keeps_every_key_above_it() {
        let h = head_of(&[
            ev(1, 1, InteractionType::Click),
            ev(2, 20, InteractionType::Click),
            ev(3, 5, InteractionType::View),
        ]);
        assert_eq!(h.key_floor, NaiveDate::from_ymd_opt(2026, 11, 13));
        assert_eq!(h.keys.len(), 1);
        assert_eq!(h.stats.as_ref().map(|s| s.total), Some(3));
    }

    #[test]
    fn what_leaves_the_head_is_returned_to_be_written() {
        let mut h = head_of(
            &(1..=32)
                .map(|s| ev(s, 20, InteractionType::Click))
                .collect::<Vec<_>>(),
        );
        let out = h.apply(&ev(33, 20, InteractionType::Click), at(33), false);
        assert_eq!(
            out.event.map(|r| (r.id, r.seq, r.minor)),
            Some(("i1".into(), 1, at(1).position.minor))
        );
        assert!(out.keys.is_empty());
        // A later day moves the floor: the old day's key leaves.
        let out = h.apply(&ev(34, 29, InteractionType::View), at(34), true);
        assert_eq!(
            out.keys,
            vec![DailyKey::of(&ev(1, 20, InteractionType::Click))]
        );
        // A late event on a day below the floor, first on its key: a row.
        let late = ev(35, 2, InteractionType::Like);
        let out = h.apply(&late, at(35), true);
        assert_eq!(out.keys, vec![DailyKey::of(&late)]);
        let out = h.apply(&ev(36, 2, InteractionType::Like), at(36), false);
        assert!(out.keys.is_empty());
    }

    #[test]
    fn the_same_events_give_the_same_bytes() {
        let events: Vec<_> = (1..=10)
            .map(|s| ev(s, 10 + s as u32, InteractionType::View))
            .collect();
        let a = head_of(&events).encode().unwrap();
        let b = head_of(&events).encode().unwrap();
        assert_eq!(a, b);
        assert_eq!(UserHead::decode(&a).unwrap(), head_of(&events));
    }

    #[test]
    fn row_keys_are_distinct_per_kind() {
        let k = DailyKey::of(&ev(1, 3, InteractionType::Click));
        let mut none = k.clone();
        none.campaign_id = None;
        assert_ne!(key_row(&k), key_row(&none));
        assert!(key_row(&k).starts_with('d'));
        assert_eq!(id_row("x"), "ix");
    }
}
