//! Durable cursors recorded but not written yet, and their stored query.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::sync::lock;
use crate::{EventQuery, EventStoreError};

/// Cursor advances waiting to be written, the greatest per stream.
///
/// Stores do not write every advance at once: they fold the pending ones
/// into their next write transaction. A cursor recorded here is handled
/// progress, so opening a stream takes the greater of the stored and the
/// pending cursor; a write that fails puts its cursors back.
#[derive(Debug, Default)]
pub struct PendingCursors {
    cursors: Mutex<HashMap<String, u64>>,
}

impl PendingCursors {
    /// No pending cursors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `name` handled everything up to `cursor`; returns
    /// whether it is the first pending cursor (so the store knows to
    /// schedule a write).
    pub fn record(&self, name: &str, cursor: u64) -> bool {
        let mut cursors = lock(&self.cursors);
        let first = cursors.is_empty();
        match cursors.get_mut(name) {
            Some(pending) => *pending = (*pending).max(cursor),
            None => {
                cursors.insert(name.to_owned(), cursor);
            }
        }
        first
    }

    /// The pending cursor of `name`, if any.
    pub fn get(&self, name: &str) -> Option<u64> {
        lock(&self.cursors).get(name).copied()
    }

    /// Takes every pending cursor, to write them.
    pub fn take(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *lock(&self.cursors))
    }

    /// Takes the pending cursor of `name` alone.
    pub fn take_one(&self, name: &str) -> Option<u64> {
        lock(&self.cursors).remove(name)
    }

    /// Puts back cursors whose write failed, keeping greater values recorded
    /// meanwhile.
    pub fn restore(&self, failed: HashMap<String, u64>) {
        let mut cursors = lock(&self.cursors);
        for (name, cursor) in failed {
            let pending = cursors.entry(name).or_insert(cursor);
            *pending = (*pending).max(cursor);
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        lock(&self.cursors).is_empty()
    }
}

/// The stored form of a durable stream's query: its normalized form (see
/// [`normalized_stream_query`](crate::backend::normalized_stream_query))
/// as JSON. Every store stores it this way, so a log moves between stores
/// with its streams.
pub fn encode_durable_query(name: &str, query: &EventQuery) -> Result<String, EventStoreError> {
    let normalized = crate::backend::normalized_stream_query(query);
    serde_json::to_string(&normalized).map_err(|error| {
        EventStoreError::invalid_input(format!(
            "the query of durable stream `{name}` cannot be stored as JSON: {error}"
        ))
    })
}

/// A durable stream's stored query.
pub fn decode_durable_query(name: &str, stored: &str) -> Result<EventQuery, EventStoreError> {
    serde_json::from_str::<EventQuery>(stored)
        .map(|query| crate::backend::normalized_stream_query(&query))
        .map_err(|error| {
            EventStoreError::backend(format!(
                "the stored query of durable stream `{name}` cannot be read: {error}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventFilter;

    #[test]
    fn pending_cursors_keep_the_greatest_value_and_survive_a_failed_write() {
        let pending = PendingCursors::new();
        assert!(pending.record("a", 5));
        assert!(!pending.record("a", 3));
        assert!(!pending.record("b", 1));
        assert_eq!(pending.get("a"), Some(5));
        let taken = pending.take();
        assert!(pending.is_empty());
        pending.record("a", 7);
        pending.restore(taken);
        assert_eq!(pending.get("a"), Some(7));
        assert_eq!(pending.get("b"), Some(1));
        assert_eq!(pending.take_one("b"), Some(1));
        assert_eq!(pending.get("b"), None);
    }

    #[test]
    fn durable_queries_round_trip_in_normalized_form() {
        let query = EventQuery::for_event_types(["a"]).with_min_sequence_number(9);
        let stored = encode_durable_query("s", &query).unwrap();
        assert_eq!(
            decode_durable_query("s", &stored).unwrap(),
            EventQuery::all().with_filters([EventFilter::for_event_types(["a"])])
        );
        let everything = encode_durable_query("s", &EventQuery::all().with_filters([])).unwrap();
        assert_eq!(
            decode_durable_query("s", &everything).unwrap(),
            EventQuery::all()
        );
        assert!(matches!(
            decode_durable_query("s", "not json"),
            Err(EventStoreError::BackendFailure { .. })
        ));
    }
}
