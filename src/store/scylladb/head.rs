//! A user's head: the state the ScyllaDB store keeps in one row per user
//! (`users`, `k = ''`), as of the user's last seq, so that deciding a
//! batch usually takes one read of one row.
//!
//! It holds the user's statistics, the ids of the last [`RECENT_IDS`]
//! events and every daily key the user has on a day at or after
//! `key_floor` (a week before the latest day seen). A batch's ids and
//! keys are answered from it whenever it can tell; only what it cannot
//! (an id of a user with more events than the window, a key on a day
//! before the floor) is looked up in the user's id and key rows, which
//! hold every event and every key.
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
    /// Oldest first.
    pub recent_ids: VecDeque<String>,
    pub key_floor: Option<NaiveDate>,
    /// Every key of the user with `day >= key_floor`.
    pub keys: BTreeSet<DailyKey>,
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

    /// Adds the user's next event (`seq = last_seq + 1`).
    pub fn apply(&mut self, e: &InteractionTracked) {
        match &mut self.stats {
            Some(s) => s.fold(e),
            None => self.stats = Some(UserStats::first(e)),
        }
        if self.recent_ids.len() == RECENT_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(e.interaction_id.clone());
        let key = DailyKey::of(e);
        let latest = self.keys.iter().map(|k| k.day).max().unwrap_or(key.day);
        let floor = latest.max(key.day) - Days::new(KEY_DAYS);
        let floor = self.key_floor.map_or(floor, |f| f.max(floor));
        if key.day >= floor {
            self.keys.insert(key);
        }
        self.keys.retain(|k| k.day >= floor);
        self.key_floor = Some(floor);
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
            if self.recent_ids.contains(id) {
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

    fn head_of(events: &[InteractionTracked]) -> UserHead {
        let mut h = UserHead::default();
        for e in events {
            h.apply(e);
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
        assert_eq!(h.recent_ids.len(), RECENT_IDS);
        let old_day = DailyKey::of(&ev(1, 2, InteractionType::Like));
        let (view, missing) = h.resolve(&["i1".into(), "i40".into(), "x".into()], &[old_day.clone()]);
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
    fn the_same_events_give_the_same_bytes() {
        let events: Vec<_> = (1..=10).map(|s| ev(s, 10 + s as u32, InteractionType::View)).collect();
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
