//! The comparison itself, pure: what was sent (the manifest) against what
//! the store holds and what the dead-letter topic holds.

use crate::loadgen::Sent;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One event as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub user: String,
    pub seq: u64,
    pub id: String,
}

/// One dead letter: the generator's id property and the reason property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: Option<String>,
    pub reason: Option<String>,
}

/// Examples kept per finding.
const EXAMPLES: usize = 5;

/// The checker's findings. Passes only when every failure count is zero.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    /// Valid commands sent (distinct ids).
    pub expected: u64,
    /// Events in the store.
    pub events: u64,
    pub users: u64,
    /// Valid ids sent but not in the store.
    pub lost: u64,
    /// Ids stored more than once (counts the extra copies).
    pub duplicated: u64,
    /// Events whose id was never sent as a valid command.
    pub unexpected: u64,
    /// Users whose sequence numbers are not exactly 1..n.
    pub gaps: u64,
    /// Users whose events are not in the order their commands were sent.
    pub out_of_order: u64,
    /// Whether the dead-letter topic was read.
    pub dlq_checked: bool,
    /// Invalid or poison messages found in the dead-letter topic.
    pub dead_lettered: u64,
    /// Invalid or poison messages sent but not in the dead-letter topic.
    pub missing_dead_letters: u64,
    /// Valid commands found in the dead-letter topic.
    pub good_dead_lettered: u64,
    /// Dead letters without a `reason` property.
    pub without_reason: u64,
    /// Dead letters by reason.
    pub reasons: HashMap<String, u64>,
    /// Differences found by the projection recount (`tracking verify`).
    pub verify_differences: u64,
    pub examples: Vec<String>,
}

impl Findings {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.gaps == 0
            && self.out_of_order == 0
            && self.missing_dead_letters == 0
            && self.good_dead_lettered == 0
            && self.without_reason == 0
            && self.verify_differences == 0
    }

    fn example(&mut self, s: String) {
        if self.examples.len() < EXAMPLES * 4 {
            self.examples.push(s);
        }
    }

    /// One line for logs and scripts.
    pub fn line(&self) -> String {
        format!(
            "{}: expected {} events, stored {} ({} users); lost {}, duplicated {}, unexpected {}, gaps {}, out-of-order {}; dead-lettered {}{}; verify differences {}",
            if self.passed() { "PASSED" } else { "FAILED" },
            self.expected,
            self.events,
            self.users,
            self.lost,
            self.duplicated,
            self.unexpected,
            self.gaps,
            self.out_of_order,
            self.dead_lettered,
            if self.dlq_checked {
                format!(
                    " (missing {}, valid ones {}, without reason {})",
                    self.missing_dead_letters, self.good_dead_lettered, self.without_reason
                )
            } else {
                " (dead-letter topic not read)".to_string()
            },
            self.verify_differences,
        )
    }
}

/// Compares. `journal` in any order; `dlq` when the topic was read.
pub fn analyse(sent: &[Sent], journal: &[Seen], dlq: Option<&[DeadLetter]>) -> Findings {
    let mut f = Findings::default();
    // What was sent: valid ids in send order per user; ids bound for the DLQ.
    let mut valid: HashMap<&str, &str> = HashMap::new();
    let mut order: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut refused: HashSet<&str> = HashSet::new();
    for s in sent {
        match s.kind.as_str() {
            // A valid id's first line fixes its place in the user's order.
            "valid" if valid.insert(&s.id, &s.user).is_none() => {
                order.entry(&s.user).or_default().push(&s.id);
            }
            "invalid" | "poison" => {
                refused.insert(&s.id);
            }
            _ => {}
        }
    }
    f.expected = valid.len() as u64;
    f.events = journal.len() as u64;

    // What is stored.
    let mut copies: HashMap<&str, u64> = HashMap::new();
    let mut per_user: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for e in journal {
        *copies.entry(&e.id).or_default() += 1;
        per_user.entry(&e.user).or_default().push((e.seq, &e.id));
    }
    f.users = per_user.len() as u64;
    for (id, n) in &copies {
        if *n > 1 {
            f.duplicated += n - 1;
            f.example(format!("duplicated: {id} stored {n} times"));
        }
        if !valid.contains_key(id) {
            f.unexpected += n;
            f.example(format!("unexpected: {id} was not sent as a valid command"));
        }
    }
    let mut lost: Vec<&str> = valid
        .keys()
        .filter(|id| !copies.contains_key(*id))
        .copied()
        .collect();
    lost.sort_unstable();
    f.lost = lost.len() as u64;
    for id in lost.iter().take(EXAMPLES) {
        f.example(format!("lost: {id}"));
    }
    let mut users: Vec<_> = per_user.into_iter().collect();
    users.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (user, mut events) in users {
        events.sort_unstable();
        let gap = events
            .iter()
            .enumerate()
            .find(|(i, (seq, _))| *seq != *i as u64 + 1);
        if let Some((i, (seq, _))) = gap {
            f.gaps += 1;
            f.example(format!(
                "gap: user {user} has seq {seq} at position {}",
                i + 1
            ));
        }
        // Stored order against send order (of the ids that are stored).
        let stored: Vec<&str> = events.iter().map(|(_, id)| *id).collect();
        let stored_set: HashSet<&str> = stored.iter().copied().collect();
        let mut seen_once = HashSet::new();
        let stored_first: Vec<&str> = stored
            .iter()
            .copied()
            .filter(|id| seen_once.insert(*id))
            .collect();
        let sent_order: Vec<&str> = order
            .get(user)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|id| stored_set.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        let stored_valid: Vec<&str> = stored_first
            .into_iter()
            .filter(|id| valid.get(id) == Some(&user))
            .collect();
        if stored_valid != sent_order {
            f.out_of_order += 1;
            let at = stored_valid
                .iter()
                .zip(&sent_order)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            f.example(format!(
                "out of order: user {user}: stored {:?}, sent {:?} at index {at}",
                stored_valid.get(at),
                sent_order.get(at)
            ));
        }
    }

    if let Some(dlq) = dlq {
        f.dlq_checked = true;
        let mut found: HashSet<&str> = HashSet::new();
        for d in dlq {
            match &d.reason {
                Some(r) => *f.reasons.entry(r.clone()).or_default() += 1,
                None => f.without_reason += 1,
            }
            let Some(id) = d.id.as_deref() else { continue };
            if valid.contains_key(id) {
                f.good_dead_lettered += 1;
                f.example(format!(
                    "valid command dead-lettered: {id} ({})",
                    d.reason.as_deref().unwrap_or("no reason")
                ));
            } else if refused.contains(id) {
                found.insert(id);
            }
        }
        f.dead_lettered = found.len() as u64;
        let mut missing: Vec<&&str> = refused.iter().filter(|id| !found.contains(**id)).collect();
        missing.sort_unstable();
        f.missing_dead_letters = missing.len() as u64;
        for id in missing.iter().take(EXAMPLES) {
            f.example(format!("not dead-lettered: {id}"));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: &str, user: &str, kind: &str) -> Sent {
        Sent {
            id: id.into(),
            user: user.into(),
            kind: kind.into(),
        }
    }
    fn seen(user: &str, seq: u64, id: &str) -> Seen {
        Seen {
            user: user.into(),
            seq,
            id: id.into(),
        }
    }
    fn dead(id: &str, reason: &str) -> DeadLetter {
        DeadLetter {
            id: Some(id.into()),
            reason: Some(reason.into()),
        }
    }

    fn manifest() -> Vec<Sent> {
        vec![
            sent("a1", "a", "valid"),
            sent("b1", "b", "valid"),
            sent("a2", "a", "valid"),
            sent("a1", "a", "duplicate"),
            sent("x", "a", "invalid"),
            sent("p", "b", "poison"),
            sent("b2", "b", "valid"),
        ]
    }

    #[test]
    fn a_clean_run_passes() {
        let j = [
            seen("a", 1, "a1"),
            seen("a", 2, "a2"),
            seen("b", 2, "b2"),
            seen("b", 1, "b1"),
        ];
        let d = [
            dead("x", "invalid_interaction_type"),
            dead("p", "malformed"),
        ];
        let f = analyse(&manifest(), &j, Some(&d));
        assert!(f.passed(), "{f:?}");
        assert_eq!(
            (f.expected, f.events, f.users, f.dead_lettered),
            (4, 4, 2, 2)
        );
        assert!(f.line().starts_with("PASSED"));
    }

    #[test]
    fn each_kind_of_fault_is_counted() {
        // b2 lost, a1 stored twice, an unknown id with a gap for c, a
        // valid one dead-lettered, the poison one missing from the DLQ, a
        // dead letter without a reason.
        let j = [
            seen("a", 1, "a1"),
            seen("a", 2, "a2"),
            seen("a", 3, "a1"),
            seen("c", 2, "zz"),
            seen("b", 1, "b1"),
        ];
        let d = [
            dead("x", "invalid_interaction_type"),
            dead("b1", "malformed"),
            DeadLetter {
                id: None,
                reason: None,
            },
        ];
        let f = analyse(&manifest(), &j, Some(&d));
        assert!(!f.passed());
        assert_eq!(f.lost, 1, "{f:?}");
        assert_eq!(f.duplicated, 1);
        assert_eq!(f.unexpected, 1);
        assert_eq!(f.gaps, 1, "c starts at 2");
        assert_eq!(f.good_dead_lettered, 1);
        assert_eq!(f.missing_dead_letters, 1);
        assert_eq!(f.without_reason, 1);
        assert!(f.line().starts_with("FAILED"));
    }

    #[test]
    fn order_is_the_send_order_per_user() {
        let j = [seen("a", 1, "a2"), seen("a", 2, "a1")];
        let m = [sent("a1", "a", "valid"), sent("a2", "a", "valid")];
        let f = analyse(&m, &j, None);
        assert_eq!(f.out_of_order, 1);
        assert_eq!(f.gaps, 0);
        assert!(!f.dlq_checked);
        assert!(!f.passed());
        // Interleaving with other users does not matter.
        let j = [seen("a", 1, "a1"), seen("a", 2, "a2")];
        assert!(analyse(&m, &j, None).passed());
    }
}
