//! The row codec: new events as the events table stores them, and stored
//! rows back as records.
//!
//! PostgreSQL's text and `jsonb` cannot hold the NUL character, so new
//! events holding one are refused here; payloads are stored as JSON text
//! and parsed back exactly as written. A stored number FACTSTR never writes
//! (a negative sequence number) fails the read as corrupt.

use chrono::{DateTime, Utc};
use factstr::backend::sequence::from_stored;
use factstr::{EventRecord, EventStoreError, NewEvent};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// A batch checked for what PostgreSQL can store, with its payloads
/// serialized (done by the caller's thread, outside the writer).
pub(crate) struct PreparedBatch {
    events: Vec<NewEvent>,
    payloads: Vec<String>,
}

impl PreparedBatch {
    /// Refuses NUL characters in event types and payload strings or keys
    /// (PostgreSQL text and jsonb cannot hold them) with `InvalidInput`.
    pub(crate) fn new(events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut payloads = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if event.event_type.contains('\0') {
                return Err(EventStoreError::invalid_input(format!(
                    "event {index} of the batch has an event_type with a NUL character ({:?}), \
                     which PostgreSQL cannot store",
                    event.event_type
                )));
            }
            if contains_nul(&event.payload) {
                return Err(EventStoreError::invalid_input(format!(
                    "the payload of event {index} of the batch (event_type `{}`) has a NUL \
                     character in a string or key, which PostgreSQL cannot store",
                    event.event_type
                )));
            }
            payloads.push(event.payload.to_string());
        }
        Ok(Self { events, payloads })
    }

    /// How many events the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The events, in order.
    pub(crate) fn events(&self) -> &[NewEvent] {
        &self.events
    }

    /// Each event's type and payload, as the events table stores them.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&str, &str)> {
        self.events
            .iter()
            .zip(&self.payloads)
            .map(|(event, payload)| (event.event_type.as_str(), payload.as_str()))
    }

    /// The events, once committed.
    pub(crate) fn into_events(self) -> Vec<NewEvent> {
        self.events
    }
}

/// Whether a string or an object key anywhere in `value` holds a NUL
/// character, which PostgreSQL's `jsonb` cannot hold.
pub(crate) fn contains_nul(value: &Value) -> bool {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(entries) => {
                if entries.keys().any(|key| key.contains('\0')) {
                    return true;
                }
                pending.extend(entries.values());
            }
            _ => {}
        }
    }
    false
}

/// Decodes the columns (sequence_number, occurred_at, event_type, payload)
/// of `row` from column `first` on; `None` when the sequence number is NULL
/// (the empty side of an outer join).
pub(crate) fn decode_record(row: &PgRow, first: usize) -> Result<Option<EventRecord>, sqlx::Error> {
    let Some(sequence_number) = row.try_get::<Option<i64>, _>(first)? else {
        return Ok(None);
    };
    record_from(row, sequence_number, first + 1).map(Some)
}

/// Decodes the columns (sequence_number, batch_last_sequence_number,
/// occurred_at, event_type, payload) of `row` from column `first` on, as
/// the record and the last sequence number of its batch; `None` when the
/// sequence number is NULL (the empty side of an outer join).
pub(crate) fn decode_batch_row(
    row: &PgRow,
    first: usize,
) -> Result<Option<(EventRecord, u64)>, sqlx::Error> {
    let Some(sequence_number) = row.try_get::<Option<i64>, _>(first)? else {
        return Ok(None);
    };
    let batch_last = stored_number(row.try_get(first + 1)?, "batch end")?;
    let record = record_from(row, sequence_number, first + 2)?;
    Ok(Some((record, batch_last)))
}

/// The log's head from the first column of `row`, `None` when the log is
/// empty.
pub(crate) fn decode_head(row: &PgRow) -> Result<Option<u64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(0)?
        .map(|head| stored_number(head, "sequence number"))
        .transpose()
}

/// The record of `sequence_number` whose (occurred_at, event_type, payload)
/// start at column `first`.
fn record_from(
    row: &PgRow,
    sequence_number: i64,
    first: usize,
) -> Result<EventRecord, sqlx::Error> {
    let sequence_number = stored_number(sequence_number, "sequence number")?;
    let occurred_at: DateTime<Utc> = row.try_get(first)?;
    let event_type: String = row.try_get(first + 1)?;
    let payload: String = row.try_get(first + 2)?;
    Ok(EventRecord {
        sequence_number,
        occurred_at,
        event_type,
        payload: parse_payload(sequence_number, &payload)?,
    })
}

/// A payload stored as JSON text.
pub(crate) fn parse_payload(sequence_number: u64, text: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|error| {
        sqlx::Error::Decode(
            format!("the stored payload of event {sequence_number} is not readable JSON: {error}")
                .into(),
        )
    })
}

/// A stored sequence number or cursor (`what` names it); a value that
/// cannot be one fails the read as a decoding error naming it.
pub(crate) fn stored_number(value: i64, what: &str) -> Result<u64, sqlx::Error> {
    from_stored(value, what).map_err(|error| {
        let message = match error {
            EventStoreError::BackendFailure { message } => message,
            other => other.to_string(),
        };
        sqlx::Error::Decode(message.into())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_characters_are_found_in_keys_and_nested_strings() {
        assert!(contains_nul(&json!({"a": [{"b": "x\u{0}"}]})));
        assert!(contains_nul(&json!({"a\u{0}": 1})));
        assert!(!contains_nul(&json!({"a": ["x", 1, null]})));
    }
}
