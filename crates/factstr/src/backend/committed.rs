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
    let (result, records) = committed_records(new_events, first_sequence_number, occurred_at);
    (result, records.collect())
}

/// [`committed_batch`] with the records as an iterator, for a store that
/// moves them straight into its own storage.
pub fn committed_records(
    new_events: impl IntoIterator<Item = NewEvent, IntoIter: ExactSizeIterator>,
    first_sequence_number: u64,
    occurred_at: DateTime<Utc>,
) -> (AppendResult, impl ExactSizeIterator<Item = EventRecord>) {
    let new_events = new_events.into_iter();
    let committed_count = new_events.len() as u64;
    let records = new_events
        .enumerate()
        .map(move |(offset, event)| EventRecord {
            sequence_number: first_sequence_number + offset as u64,
            occurred_at,
            event_type: event.event_type,
            payload: event.payload,
        });
    let result = AppendResult {
        first_sequence_number,
        last_sequence_number: first_sequence_number + committed_count.saturating_sub(1),
        committed_count,
    };
    (result, records)
}

/// Groups records read in ascending order into their committed batches;
/// each record comes with the last sequence number of its batch (what the
/// SQL stores keep per row).
pub fn group_into_batches(
    rows: impl IntoIterator<Item = (EventRecord, u64)>,
) -> Vec<Vec<EventRecord>> {
    let mut batches: Vec<Vec<EventRecord>> = Vec::new();
    let mut current_batch_last = None;
    for (record, batch_last) in rows {
        match batches.last_mut() {
            Some(batch) if current_batch_last == Some(batch_last) => batch.push(record),
            _ => batches.push(vec![record]),
        }
        current_batch_last = Some(batch_last);
    }
    batches
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_group_by_their_batch_end() {
        let record = |sequence_number| EventRecord {
            sequence_number,
            occurred_at: chrono::Utc::now(),
            event_type: "a".to_owned(),
            payload: json!(null),
        };
        let rows = [
            (record(1), 1),
            (record(2), 4),
            (record(4), 4),
            (record(5), 5),
        ];
        let shapes: Vec<Vec<u64>> = group_into_batches(rows)
            .iter()
            .map(|batch| batch.iter().map(|record| record.sequence_number).collect())
            .collect();
        assert_eq!(shapes, vec![vec![1], vec![2, 4], vec![5]]);
        assert!(group_into_batches([]).is_empty());
    }
}
