//! Sequence numbers as stores assign and store them.
//!
//! Stores keep sequence numbers, cursors and commit times in signed 64-bit
//! SQL integers. A stored value that cannot be one (a negative sequence
//! number, a time out of range) means the database was changed by something
//! else or is corrupt: every store reports it the same way, as a
//! `BackendFailure` naming the value, and never maps it to a valid number.

use chrono::{DateTime, Utc};

use crate::EventStoreError;
use crate::backend::validation::MAX_SEQUENCE_NUMBER;

/// The sequence range of `count` events appended after `last_committed`,
/// or the error every store returns when the log cannot take them.
pub fn next_range(last_committed: u64, count: usize) -> Result<(u64, u64), EventStoreError> {
    let first = last_committed.saturating_add(1);
    let last = u64::try_from(count)
        .ok()
        .and_then(|count| last_committed.checked_add(count))
        .filter(|&last| last <= MAX_SEQUENCE_NUMBER);
    match last {
        Some(last) if count > 0 => Ok((first, last)),
        _ => Err(EventStoreError::backend(format!(
            "the log cannot take {count} more event(s) after sequence number \
             {last_committed}: sequence numbers end at {MAX_SEQUENCE_NUMBER}"
        ))),
    }
}

/// A sequence number, cursor or bound as a stored SQL integer. Bounds beyond
/// the SQL range are clamped (no stored sequence number exceeds
/// [`MAX_SEQUENCE_NUMBER`]).
pub fn to_stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored sequence number or cursor (`what` names it for the error).
pub fn from_stored(value: i64, what: &str) -> Result<u64, EventStoreError> {
    u64::try_from(value).map_err(|_| corrupt(what, value))
}

/// A stored commit time in microseconds since the Unix epoch.
pub fn time_from_stored_micros(micros: i64) -> Result<DateTime<Utc>, EventStoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt("commit time", micros))
}

/// The error for a stored value that cannot be what it should be.
pub fn corrupt(what: &str, value: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::backend(format!(
        "the database holds an invalid {what}: {value}; it was changed by something \
         other than FACTSTR or is corrupt"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_last_committed_number() {
        assert_eq!(next_range(0, 1), Ok((1, 1)));
        assert_eq!(next_range(7, 3), Ok((8, 10)));
        assert_eq!(
            next_range(MAX_SEQUENCE_NUMBER - 2, 2),
            Ok((MAX_SEQUENCE_NUMBER - 1, MAX_SEQUENCE_NUMBER))
        );
    }

    #[test]
    fn a_range_beyond_the_last_sequence_number_is_refused() {
        for (last, count) in [
            (MAX_SEQUENCE_NUMBER, 1),
            (MAX_SEQUENCE_NUMBER - 1, 2),
            (u64::MAX, 1),
        ] {
            let Err(EventStoreError::BackendFailure { message }) = next_range(last, count) else {
                panic!("{last} + {count} was accepted");
            };
            assert!(message.contains("sequence numbers end at"), "{message}");
        }
    }

    #[test]
    fn negative_stored_numbers_are_corruption_not_zero() {
        assert_eq!(from_stored(5, "cursor"), Ok(5));
        let Err(EventStoreError::BackendFailure { message }) = from_stored(-1, "cursor") else {
            panic!("a negative cursor was accepted");
        };
        assert!(message.contains("invalid cursor: -1"), "{message}");
        assert_eq!(to_stored(u64::MAX), i64::MAX);
        assert!(time_from_stored_micros(i64::MAX).is_err());
        assert_eq!(
            time_from_stored_micros(1_000_001).map(|time| time.timestamp_micros()),
            Ok(1_000_001)
        );
    }
}
