//! The aggregate's decision as a pure function: given what the store
//! knows of one user ([`UserView`]) and a batch of that user's commands in
//! delivery order, each with the time its message was published, which
//! commands become events (and with which sequence numbers), which are
//! duplicates and which are rejected.
//!
//! No clock and no I/O: "now" is the message's publish time, carried by
//! the message itself. The same view and the same commands give the same
//! decision on any worker, at any time. The ScyllaDB store relies on it:
//! a worker that lost a user (a rebalance, a paused process) and finishes
//! its batch late writes exactly what the user's new worker writes for the
//! same commands, so no consensus round is needed per event (actors.md,
//! "Exactly once without consensus").

use super::{day_of, TrackInteraction};
use super::{validate, InteractionTracked, InteractionType, RejectReason, Rejection};
use crate::hash::Set;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A (day of occurrence, type, campaign) key of the daily statistics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DailyKey {
    pub day: NaiveDate,
    pub interaction_type: InteractionType,
    pub campaign_id: Option<String>,
}

impl DailyKey {
    /// The key a command counts on if the rules accept it (`None`: its
    /// type is not one the rules know).
    pub fn of_command(c: &TrackInteraction) -> Option<Self> {
        Some(DailyKey {
            day: day_of(c.occurred_at),
            interaction_type: InteractionType::parse(&c.interaction_type)?,
            campaign_id: c
                .campaign_id
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        })
    }

    pub fn of(e: &InteractionTracked) -> Self {
        DailyKey {
            day: day_of(e.occurred_at),
            interaction_type: e.interaction_type,
            campaign_id: e.campaign_id.clone(),
        }
    }
}

/// What the store knows of the user, as far as this batch needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserView {
    /// The user's last committed sequence number (0: no event yet).
    pub last_seq: u64,
    /// Ids of this batch that the user's committed events already hold.
    pub own_ids: HashSet<String>,
    /// Ids of this batch held by another user's events (stores with a
    /// store-wide id index only).
    pub foreign_ids: HashSet<String>,
    /// Daily keys of this batch on which the user already has an event.
    pub known_keys: HashSet<DailyKey>,
}

/// One command of the batch and the time its message was published.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub command: &'a TrackInteraction,
    pub published_at: DateTime<Utc>,
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The event at `events[index]`.
    Event(usize),
    /// Already an event of this user (or earlier in this batch).
    Duplicate,
    /// Refused; its rejection is in `rejections` (with the command's index).
    Rejected(RejectReason),
}

/// A new event and what it adds to the daily statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event: InteractionTracked,
    /// The user's first event on its [`DailyKey`]: counts one unique user.
    pub first_of_key: bool,
    /// Index of the command it came from.
    pub command: usize,
}

/// The decision on a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// One per command, in order.
    pub verdicts: Vec<Verdict>,
    /// Sequence numbers `last_seq + 1, + 2, ...`.
    pub events: Vec<NewEvent>,
    /// `(command index, rejection)`.
    pub rejections: Vec<(usize, Rejection)>,
}

impl Decision {
    pub fn duplicates(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| **v == Verdict::Duplicate)
            .count()
    }
}

/// Decides a batch of `user`'s commands against the view.
///
/// - A command failing the rules is rejected, stamped with its publish
///   time (the status projection counts it on that day).
/// - An id the user already holds, or one earlier in the batch, is a
///   duplicate: no event, acknowledged.
/// - An id held by another user is rejected (`conflicting_interaction_id`)
///   under a command id of its own (`<id>#<user>`), so it does not shadow
///   the other user's id in the rejection records.
/// - Anything else is the user's next event, recorded at its publish time.
pub fn decide(user: &str, view: &UserView, inputs: &[Input<'_>]) -> Decision {
    // A verdict per command and mostly an event per command: allocated
    // once, not grown. Most batches hold one command: `seen` and
    // `keys_this_batch` allocate only for the commands after it. Keys of a
    // batch are few (types x days), so a list.
    let mut d = Decision {
        verdicts: Vec::with_capacity(inputs.len()),
        events: Vec::with_capacity(inputs.len()),
        rejections: Vec::new(),
    };
    let mut seen: Set<&str> = Set::default();
    let mut keys_this_batch: Vec<DailyKey> = Vec::new();
    let more_after = |i: usize| i + 1 < inputs.len();
    for (i, input) in inputs.iter().enumerate() {
        let now = input.published_at;
        let mut event = match validate(input.command, now) {
            Ok(e) => e,
            Err(v) => {
                d.rejections.push((
                    i,
                    Rejection {
                        command_id: input.command.interaction_id.clone(),
                        reason: v.reason,
                        detail: v.message,
                        rejected_at: now,
                    },
                ));
                d.verdicts.push(Verdict::Rejected(v.reason));
                continue;
            }
        };
        let id = input.command.interaction_id.as_str();
        if seen.contains(id) || view.own_ids.contains(id) {
            d.verdicts.push(Verdict::Duplicate);
            continue;
        }
        if more_after(i) {
            seen.insert(id);
        }
        if view.foreign_ids.contains(id) {
            let reason = RejectReason::ConflictingInteractionId;
            d.rejections.push((
                i,
                Rejection {
                    command_id: format!("{id}#{user}"),
                    reason,
                    detail: "interaction id already used by another user".into(),
                    rejected_at: now,
                },
            ));
            d.verdicts.push(Verdict::Rejected(reason));
            continue;
        }
        event.seq = view.last_seq + d.events.len() as u64 + 1;
        let key = DailyKey::of(&event);
        let first_of_key = !view.known_keys.contains(&key) && !keys_this_batch.contains(&key);
        if first_of_key && more_after(i) {
            keys_this_batch.push(key);
        }
        d.verdicts.push(Verdict::Event(d.events.len()));
        d.events.push(NewEvent {
            event,
            first_of_key,
            command: i,
        });
    }
    d
}

#[cfg(test)]
mod tests {
    //! Given a view, when a batch is decided, then ... (one rule each).
    use super::*;
    use crate::domain::{CommandFormat, Target};
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, 0, 0).unwrap()
    }

    fn cmd(id: &str, ty: &str) -> TrackInteraction {
        TrackInteraction {
            interaction_id: id.into(),
            user_id: "u".into(),
            interaction_type: ty.into(),
            target: Target {
                id: "post-1".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c".into()),
            affiliate_id: None,
            occurred_at: at(9),
            correlation_id: None,
            format: CommandFormat::Canonical,
        }
    }

    fn run(view: &UserView, cmds: &[TrackInteraction]) -> Decision {
        let inputs: Vec<Input> = cmds
            .iter()
            .map(|c| Input {
                command: c,
                published_at: at(10),
            })
            .collect();
        decide("u", view, &inputs)
    }

    #[test]
    fn given_a_new_user_when_two_commands_then_seqs_one_and_two() {
        let d = run(&UserView::default(), &[cmd("a", "click"), cmd("b", "view")]);
        assert_eq!(d.verdicts, vec![Verdict::Event(0), Verdict::Event(1)]);
        let seqs: Vec<u64> = d.events.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(d.events[0].event.recorded_at, Some(at(10)));
    }

    #[test]
    fn given_last_seq_seven_when_a_command_then_seq_eight() {
        let view = UserView {
            last_seq: 7,
            ..Default::default()
        };
        let d = run(&view, &[cmd("a", "click")]);
        assert_eq!(d.events[0].event.seq, 8);
    }

    #[test]
    fn given_an_id_the_user_holds_when_it_comes_again_then_duplicate() {
        let view = UserView {
            last_seq: 3,
            own_ids: ["a".to_string()].into(),
            ..Default::default()
        };
        let d = run(&view, &[cmd("a", "click"), cmd("b", "click")]);
        assert_eq!(d.verdicts, vec![Verdict::Duplicate, Verdict::Event(0)]);
        assert_eq!(d.events[0].event.seq, 4);
        assert_eq!(d.duplicates(), 1);
    }

    #[test]
    fn given_a_batch_repeating_an_id_then_the_second_is_a_duplicate() {
        let d = run(&UserView::default(), &[cmd("a", "click"), cmd("a", "view")]);
        assert_eq!(d.verdicts, vec![Verdict::Event(0), Verdict::Duplicate]);
    }

    #[test]
    fn given_an_id_of_another_user_then_rejected_under_its_own_command_id() {
        let view = UserView {
            foreign_ids: ["a".to_string()].into(),
            ..Default::default()
        };
        let d = run(&view, &[cmd("a", "click")]);
        assert_eq!(
            d.verdicts,
            vec![Verdict::Rejected(RejectReason::ConflictingInteractionId)]
        );
        assert_eq!(d.rejections[0].1.command_id, "a#u");
        assert!(d.events.is_empty());
    }

    #[test]
    fn given_a_rule_violation_then_rejected_at_the_publish_time_and_no_seq_used() {
        let d = run(&UserView::default(), &[cmd("a", "share"), cmd("b", "like")]);
        assert_eq!(
            d.verdicts,
            vec![
                Verdict::Rejected(RejectReason::InvalidInteractionType),
                Verdict::Event(0)
            ]
        );
        assert_eq!(d.rejections[0].1.rejected_at, at(10));
        assert_eq!(d.events[0].event.seq, 1);
    }

    #[test]
    fn given_a_known_daily_key_then_not_first_and_a_new_key_is_first_once() {
        let click = DailyKey::of(&run(&UserView::default(), &[cmd("x", "click")]).events[0].event);
        let view = UserView {
            known_keys: [click].into(),
            ..Default::default()
        };
        let d = run(
            &view,
            &[cmd("a", "click"), cmd("b", "view"), cmd("c", "view")],
        );
        let firsts: Vec<bool> = d.events.iter().map(|e| e.first_of_key).collect();
        assert_eq!(firsts, vec![false, true, false]);
    }

    #[test]
    fn a_commands_key_is_its_events_key() {
        let d = run(&UserView::default(), &[cmd("a", "view")]);
        assert_eq!(
            DailyKey::of_command(&cmd("a", "view")),
            Some(DailyKey::of(&d.events[0].event))
        );
        assert_eq!(DailyKey::of_command(&cmd("a", "share")), None);
    }

    #[test]
    fn the_same_inputs_give_the_same_decision() {
        let view = UserView {
            last_seq: 2,
            own_ids: ["b".to_string()].into(),
            ..Default::default()
        };
        let cmds = [cmd("a", "click"), cmd("b", "view"), cmd("c", "like")];
        assert_eq!(run(&view, &cmds), run(&view, &cmds));
    }

    #[test]
    fn a_command_from_the_future_of_its_publish_time_is_rejected() {
        let mut c = cmd("a", "click");
        c.occurred_at = at(10) + chrono::Duration::hours(25);
        let d = run(&UserView::default(), &[c]);
        assert_eq!(
            d.verdicts,
            vec![Verdict::Rejected(RejectReason::OccurredInFuture)]
        );
    }
}
