//! What a client can be told at once about an interaction id that is
//! already recorded: the HTTP front looks the id up before it appends a
//! command, and answers 409 where the pipeline would otherwise accept the
//! command (202) and then reject or ignore it.
//!
//! Pure: the recorded event comes from the caller's lookup. The check is
//! as good as that lookup (ids already decided); two commands reusing an id
//! at the same moment are both accepted and decided by the pipeline, which
//! keeps the first (README, "What a 202 promises").

use super::InteractionTracked;

/// The outcome of checking a command's id against the event recorded
/// under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdReuse {
    /// No event holds the id.
    Fresh,
    /// The same user sent the same content again: a retry, a duplicate
    /// that changes nothing.
    Retry,
    /// Another user's event holds the id: the command would be rejected
    /// (`conflicting_interaction_id`).
    OtherUser,
    /// The user's event with this id has different content in these
    /// fields: the command would be ignored as a duplicate and its content
    /// lost.
    ChangedContent(Vec<&'static str>),
}

/// Compares the event a command would become (`would_be`, from the rules)
/// with the one recorded under its id. `occurred_at` counts only when the
/// command carried one: without it, each attempt is stamped with the time
/// it arrived. The correlation id is request metadata, free to differ
/// between attempts.
pub fn check_reuse(
    would_be: &InteractionTracked,
    recorded: Option<&InteractionTracked>,
    occurred_at_given: bool,
) -> IdReuse {
    let Some(recorded) = recorded else {
        return IdReuse::Fresh;
    };
    if recorded.user_id != would_be.user_id {
        return IdReuse::OtherUser;
    }
    let mut changed = Vec::new();
    if recorded.interaction_type != would_be.interaction_type {
        changed.push("interaction_type");
    }
    if recorded.target != would_be.target {
        changed.push("target");
    }
    if recorded.campaign_id != would_be.campaign_id {
        changed.push("campaign_id");
    }
    if recorded.affiliate_id != would_be.affiliate_id {
        changed.push("affiliate_id");
    }
    if occurred_at_given && recorded.occurred_at != would_be.occurred_at {
        changed.push("occurred_at");
    }
    if changed.is_empty() {
        IdReuse::Retry
    } else {
        IdReuse::ChangedContent(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InteractionType, Target, EVENT_SCHEMA_VERSION};
    use chrono::{TimeZone, Utc};

    fn event(user: &str) -> InteractionTracked {
        InteractionTracked {
            schema_version: EVENT_SCHEMA_VERSION,
            interaction_id: "i-1".into(),
            user_id: user.into(),
            seq: 0,
            interaction_type: InteractionType::Click,
            target: Target {
                id: "post-1".into(),
                kind: "post".into(),
            },
            campaign_id: Some("c-1".into()),
            occurred_at: Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap(),
            affiliate_id: Some("a-1".into()),
            correlation_id: None,
            recorded_at: None,
        }
    }

    #[test]
    fn given_no_recorded_event_then_fresh() {
        assert_eq!(check_reuse(&event("u"), None, true), IdReuse::Fresh);
    }

    #[test]
    fn given_the_same_content_from_the_same_user_then_a_retry() {
        // Given a recorded event (seq and recorded time assigned)
        let mut recorded = event("u");
        recorded.seq = 7;
        recorded.recorded_at = Some(Utc::now());
        // When the same command comes again with another correlation id
        let mut again = event("u");
        again.correlation_id = Some("trace-2".into());
        // Then it is a retry
        assert_eq!(check_reuse(&again, Some(&recorded), true), IdReuse::Retry);
    }

    #[test]
    fn given_another_users_event_then_other_user() {
        let recorded = event("u");
        assert_eq!(
            check_reuse(&event("v"), Some(&recorded), true),
            IdReuse::OtherUser
        );
    }

    #[test]
    fn given_changed_content_then_the_changed_fields_are_named() {
        let recorded = event("u");
        let mut changed = event("u");
        changed.interaction_type = InteractionType::Like;
        changed.campaign_id = Some("c-2".into());
        changed.occurred_at = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        assert_eq!(
            check_reuse(&changed, Some(&recorded), true),
            IdReuse::ChangedContent(vec!["interaction_type", "campaign_id", "occurred_at"])
        );
    }

    #[test]
    fn given_no_occurred_at_in_the_command_then_its_arrival_time_is_not_compared() {
        let recorded = event("u");
        let mut again = event("u");
        again.occurred_at = Utc::now();
        assert_eq!(check_reuse(&again, Some(&recorded), false), IdReuse::Retry);
    }
}
