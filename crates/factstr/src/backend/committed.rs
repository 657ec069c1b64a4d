use chrono::{DateTime, Utc};

use crate::{AppendResult, EventRecord, NewEvent};

/// The records and the result of a batch committed at `occurred_at` with
/// its first event at `first_sequence_number`: consecutive sequence
/// numbers, one commit time for all events, `committed_count` = the batch size.
/// `new_events` is any sized sequence of events, so a store can pass its own
/// prepared events through a `map` without collecting them first.
///
/// ```
/// use chrono::Utc;
/// use factstr::NewEvent;
/// use factstr::backend::committed_batch;
/// use serde_json::json;
///
/// let now = Utc::now();
/// let (result, records) = committed_batch(
///     vec![NewEvent::new("a", json!(1)), NewEvent::new("b", json!(2))],
///     7,
///     now,
/// );
/// assert_eq!((result.first_sequence_number, result.last_sequence_number, result.committed_count), (7, 8, 2));
/// assert_eq!(records[1].sequence_number, 8);
/// assert!(records.iter().all(|record| record.occurred_at == now));
/// ```
pub fn committed_batch(
    new_events: impl IntoIterator<Item = NewEvent, IntoIter: ExactSizeIterator>,
    first_sequence_number: u64,
    occurred_at: DateTime<Utc>,
) -> (AppendResult, Vec<EventRecord>) {
    let new_events = new_events.into_iter();
    let committed_count = new_events.len() as u64;
    let records: Vec<EventRecord> = new_events
        .zip(first_sequence_number..)
        .map(|(event, sequence_number)| EventRecord {
            sequence_number,
            occurred_at,
            event_type: event.event_type,
            payload: event.payload,
        })
        .collect();
    let result = AppendResult {
        first_sequence_number,
        last_sequence_number: first_sequence_number + committed_count.saturating_sub(1),
        committed_count,
    };
    (result, records)
}
