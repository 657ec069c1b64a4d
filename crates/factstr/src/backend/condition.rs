//! The condition of `append_if`, checked the same way by every store.

use crate::{EventQuery, EventStoreError, NewEvent};

/// What an `append_if` requires: the context version of `query` (ignoring
/// its `min_sequence_number`) must equal `expected` (`None`: nothing may
/// match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The context the caller decided on.
    pub query: EventQuery,
    /// The context version the caller saw.
    pub expected: Option<u64>,
}

impl Condition {
    /// The condition of `append_if(_, query, expected)`.
    pub fn new(query: &EventQuery, expected: Option<u64>) -> Self {
        Self {
            query: query.clone(),
            expected,
        }
    }

    /// Whether the context version found, `actual`, lets the append happen;
    /// otherwise the [`ConditionalAppendConflict`](EventStoreError::ConditionalAppendConflict)
    /// to return.
    pub fn check(&self, actual: Option<u64>) -> Result<(), EventStoreError> {
        Self::check_version(self.expected, actual)
    }

    /// [`check`](Self::check) for a store that does not keep the condition
    /// (it checks on the caller's thread, with the caller's query).
    pub fn check_version(
        expected: Option<u64>,
        actual: Option<u64>,
    ) -> Result<(), EventStoreError> {
        if actual == expected {
            Ok(())
        } else {
            Err(EventStoreError::ConditionalAppendConflict { expected, actual })
        }
    }

    /// The context version of this condition's query, given the newest
    /// stored match and the appends accepted earlier in the same group
    /// commit (see [`newest_match_in_group`]).
    pub fn context_version<'a>(
        &self,
        stored: Option<u64>,
        accepted_earlier: impl DoubleEndedIterator<Item = (u64, &'a [NewEvent])>,
    ) -> Option<u64> {
        newest_match_in_group(&self.query, accepted_earlier).or(stored)
    }
}

/// The greatest sequence number among `accepted` appends of a group commit
/// whose event matches `query`. Each append is given as its first sequence
/// number and its events, in commit order; they all follow the stored log,
/// so a match here is newer than any stored one.
pub fn newest_match_in_group<'a>(
    query: &EventQuery,
    accepted: impl DoubleEndedIterator<Item = (u64, &'a [NewEvent])>,
) -> Option<u64> {
    accepted.rev().find_map(|(first, events)| {
        events
            .iter()
            .rposition(|event| query.matches(&event.event_type, &event.payload))
            .map(|offset| first + offset as u64)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_condition_holds_only_for_the_expected_version() {
        let condition = Condition::new(&EventQuery::all(), Some(3));
        assert_eq!(condition.check(Some(3)), Ok(()));
        assert_eq!(
            condition.check(None),
            Err(EventStoreError::ConditionalAppendConflict {
                expected: Some(3),
                actual: None
            })
        );
        assert_eq!(Condition::new(&EventQuery::all(), None).check(None), Ok(()));
    }

    #[test]
    fn the_newest_match_of_a_group_is_the_last_matching_event_of_the_last_matching_append() {
        let first = vec![NewEvent::new("a", json!(1)), NewEvent::new("b", json!(2))];
        let second = vec![NewEvent::new("b", json!(3)), NewEvent::new("c", json!(4))];
        let accepted = || [(5, first.as_slice()), (7, second.as_slice())].into_iter();
        let only_b = EventQuery::for_event_types(["b"]);
        assert_eq!(newest_match_in_group(&only_b, accepted()), Some(7));
        let only_a = EventQuery::for_event_types(["a"]);
        assert_eq!(newest_match_in_group(&only_a, accepted()), Some(5));
        let none = EventQuery::for_event_types(["z"]);
        assert_eq!(newest_match_in_group(&none, accepted()), None);
        let condition = Condition::new(&none, None);
        assert_eq!(condition.context_version(Some(2), accepted()), Some(2));
        let condition = Condition::new(&only_a, None);
        assert_eq!(condition.context_version(Some(2), accepted()), Some(5));
    }
}
