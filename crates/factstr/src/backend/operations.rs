//! What operating a store needs beyond [`EventStore`](crate::EventStore):
//! statistics, durable stream administration, and writing batches that
//! were committed elsewhere (import, copy). The `factstr` command uses it;
//! applications do not need it.

use chrono::{DateTime, Utc};

use crate::backend::{BatchReadRequest, CommittedLog};
use crate::{EventQuery, EventRecord, EventStoreError};

/// Figures about a store's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// How many facts the log holds.
    pub facts: u64,
    /// How many committed batches.
    pub batches: u64,
    /// The last sequence number (0 when empty).
    pub head: u64,
    /// Commit time of the first fact.
    pub first_commit: Option<DateTime<Utc>>,
    /// Commit time of the last fact.
    pub last_commit: Option<DateTime<Utc>>,
    /// Facts per event type, by type name.
    pub facts_per_type: Vec<(String, u64)>,
}

/// A durable stream as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableStreamInfo {
    /// The stream's name.
    pub name: String,
    /// Its query, normalized (no `min_sequence_number`).
    pub query: EventQuery,
    /// The last sequence number it handled.
    pub cursor: u64,
    /// Whether some process runs it right now, where the store can tell.
    pub active: Option<bool>,
}

/// Store-level operations for running a store (inspecting, backing up,
/// moving a log, rewinding a projection), implemented by the SQLite and
/// PostgreSQL stores.
pub trait StoreOperations {
    /// Counts facts and batches, and reads the log's bounds and types.
    fn log_stats(&self) -> Result<LogStats, EventStoreError>;

    /// Whole committed batches after `after` (0 or the last sequence
    /// number of a batch), in order: about `max_events` events, never a
    /// batch split, at least one batch when the log goes beyond `after`,
    /// none when it does not. Paging with it reads a log in bounded memory
    /// with its batch boundaries (export, copy), which
    /// [`EventStore::query`](crate::EventStore::query) does not show.
    fn read_batches(
        &self,
        after: u64,
        max_events: usize,
    ) -> Result<Vec<Vec<EventRecord>>, EventStoreError>;

    /// Every durable stream, by name.
    fn durable_streams(&self) -> Result<Vec<DurableStreamInfo>, EventStoreError>;

    /// Creates the durable stream `name` with `query` and `cursor`, or moves
    /// the cursor of an existing one with the same query (backwards or
    /// forwards, at most to the log's head). Refused with `BackendFailure`
    /// while the stream runs anywhere, and with `InvalidInput` for a cursor
    /// beyond the head or a query that differs from the stored one.
    fn set_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
        cursor: u64,
    ) -> Result<(), EventStoreError>;

    /// Deletes the durable stream `name`; refused while it runs anywhere.
    /// Returns whether it existed.
    fn delete_durable_stream(&self, name: &str) -> Result<bool, EventStoreError>;

    /// Writes `batches`, committed elsewhere, with their sequence numbers,
    /// commit times, types and payloads, in one transaction: the first must
    /// start right after this log's head, and each must follow the one
    /// before. Refused (writing nothing) otherwise. Live streams of this
    /// store receive them like other commits.
    fn import_batches(&self, batches: &[Vec<EventRecord>]) -> Result<(), EventStoreError>;
}

/// Checks batches for [`StoreOperations::import_batches`] against a log
/// whose last sequence number is `head`: not empty, each batch consecutive,
/// sharing one commit time, following the one before (the first right after
/// `head`), commit times not going back, and every event acceptable as an
/// append would be (event type, payload depth).
pub fn check_imported_batches(
    head: u64,
    batches: &[Vec<EventRecord>],
) -> Result<(), EventStoreError> {
    let mut expected = head + 1;
    let mut previous_time: Option<DateTime<Utc>> = None;
    for (index, batch) in batches.iter().enumerate() {
        let Some(first) = batch.first() else {
            return Err(EventStoreError::invalid_input(format!(
                "imported batch {index} is empty"
            )));
        };
        for (offset, record) in batch.iter().enumerate() {
            let wanted = expected + offset as u64;
            if record.sequence_number != wanted {
                return Err(EventStoreError::invalid_input(format!(
                    "imported batch {index} holds sequence number {} where {wanted} \
                     comes next (the log's head is {head})",
                    record.sequence_number
                )));
            }
            if record.occurred_at != first.occurred_at {
                return Err(EventStoreError::invalid_input(format!(
                    "the events of imported batch {index} do not share one commit time"
                )));
            }
        }
        if previous_time.is_some_and(|previous| first.occurred_at < previous) {
            return Err(EventStoreError::invalid_input(format!(
                "imported batch {index} was committed before the batch preceding it"
            )));
        }
        let events: Vec<crate::NewEvent> = batch
            .iter()
            .map(|record| crate::NewEvent::new(record.event_type.clone(), record.payload.clone()))
            .collect();
        crate::backend::validation::validate_new_events(&events)?;
        previous_time = Some(first.occurred_at);
        expected += batch.len() as u64;
    }
    if expected - 1 > crate::backend::validation::MAX_SEQUENCE_NUMBER {
        return Err(EventStoreError::invalid_input(
            "imported batches go beyond the greatest sequence number",
        ));
    }
    Ok(())
}

/// [`StoreOperations::read_batches`] for a store that reads through its
/// [`CommittedLog`]: the whole batches after `after`, up to the log's head
/// now, about `max_events` events (a batch is never split).
pub fn read_whole_batches(
    log: &dyn CommittedLog,
    after: u64,
    max_events: usize,
) -> Result<Vec<Vec<EventRecord>>, EventStoreError> {
    let through = log.committed_head()?;
    let page = log.read_committed_batches(&BatchReadRequest {
        after,
        through,
        query: None,
        max_events,
    })?;
    Ok(page.batches)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(sequence_number: u64, micros: i64) -> EventRecord {
        EventRecord {
            sequence_number,
            occurred_at: DateTime::from_timestamp_micros(micros).unwrap(),
            event_type: "a".to_owned(),
            payload: json!({}),
        }
    }

    #[test]
    fn batches_must_continue_the_log_whole_and_in_time_order() {
        let good = vec![vec![record(4, 10), record(5, 10)], vec![record(6, 11)]];
        assert_eq!(check_imported_batches(3, &good), Ok(()));
        for (head, batches) in [
            (2, good.clone()),
            (3, vec![vec![record(4, 10)], vec![record(6, 11)]]),
            (3, vec![vec![record(4, 10), record(5, 11)]]),
            (3, vec![vec![record(4, 10)], vec![record(5, 9)]]),
            (3, vec![vec![]]),
        ] {
            assert!(
                matches!(
                    check_imported_batches(head, &batches),
                    Err(EventStoreError::InvalidInput { .. })
                ),
                "{head} {batches:?}"
            );
        }
        let mut empty_type = record(4, 10);
        empty_type.event_type.clear();
        assert!(check_imported_batches(3, &[vec![empty_type]]).is_err());
    }
}
