//! The row codec: new events as the events table stores them, and stored
//! rows back as records.
//!
//! Events are serialised on the caller's thread, so that the writer only
//! writes. A stored number FACTSTR never writes (a negative sequence
//! number) fails the read as corrupt.

use std::mem;

use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::{corrupt, from_stored, time_from_stored_micros};
use factstr::{EventRecord, EventStoreError, NewEvent};
use rusqlite::{Connection, Row};
use serde_json::Value;

use crate::error::SqliteResultExt;
use crate::{index, sql};

/// SQLite's default limit on the length of a text value.
const MAX_TEXT_BYTES: usize = 1_000_000_000;

/// A validated batch ready to be written.
pub(crate) struct PreparedBatch {
    events: Vec<NewEvent>,
    /// The JSON text of each event's payload, in order.
    payloads_json: Vec<String>,
    /// The payload index documents of the events, in order: JSON strings
    /// separated by commas (see [`index::push_document`]).
    index_documents: String,
    /// Some payload of the batch has a term.
    has_terms: bool,
}

impl PreparedBatch {
    /// Serialises `new_events` (already checked by
    /// `factstr::backend::validation`) and computes their index documents;
    /// refuses what SQLite cannot store.
    pub(crate) fn new(new_events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut payloads_json = Vec::with_capacity(new_events.len());
        let mut index_documents = String::with_capacity(new_events.len() * 64);
        let mut has_terms = false;
        for (index, event) in new_events.iter().enumerate() {
            let payload_json = serde_json::to_string(&event.payload).map_err(|error| {
                EventStoreError::invalid_input(format!(
                    "the payload of event {index} of the batch cannot be written as JSON: {error}"
                ))
            })?;
            if payload_json.len() > MAX_TEXT_BYTES || event.event_type.len() > MAX_TEXT_BYTES {
                return Err(EventStoreError::invalid_input(format!(
                    "event {index} of the batch is larger than SQLite's limit of \
                     {MAX_TEXT_BYTES} bytes per value"
                )));
            }
            let terms = payload_terms(&event.payload);
            has_terms |= !terms.is_empty();
            if index > 0 {
                index_documents.push(',');
            }
            index::push_document(&mut index_documents, &terms);
            payloads_json.push(payload_json);
        }
        Ok(Self {
            events: new_events,
            payloads_json,
            index_documents,
            has_terms,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The event type and payload JSON of each event, in order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&str, &str)> {
        self.events
            .iter()
            .zip(&self.payloads_json)
            .map(|(event, payload_json)| (event.event_type.as_str(), payload_json.as_str()))
    }

    /// The batch's payload index documents, and whether any is not empty.
    pub(crate) fn take_index_documents(&mut self) -> (String, bool) {
        (mem::take(&mut self.index_documents), self.has_terms)
    }

    /// The events, once written.
    pub(crate) fn into_events(self) -> Vec<NewEvent> {
        self.events
    }
}

/// An event as a row of `factstr_events`: its sequence number, the last
/// sequence number of its batch, the commit time in microseconds, its type
/// and its payload's JSON text.
pub(crate) type EventRow<'a> = (i64, i64, i64, &'a str, &'a str);

/// Writes `count` event rows, taken from `rows`, with the largest multi-row
/// `INSERT`s first.
pub(crate) fn insert_events<'a>(
    connection: &Connection,
    count: usize,
    mut rows: impl Iterator<Item = EventRow<'a>>,
) -> rusqlite::Result<()> {
    let mut left = count;
    while left > 0 {
        let (chunk, statement_sql) = sql::insert_events(left);
        let mut statement = connection.prepare_cached(statement_sql)?;
        let mut index = 1;
        for (sequence_number, batch_last, micros, event_type, payload_json) in
            rows.by_ref().take(chunk)
        {
            statement.raw_bind_parameter(index, sequence_number)?;
            statement.raw_bind_parameter(index + 1, batch_last)?;
            statement.raw_bind_parameter(index + 2, micros)?;
            statement.raw_bind_parameter(index + 3, event_type)?;
            statement.raw_bind_parameter(index + 4, payload_json)?;
            index += 5;
        }
        statement.raw_execute()?;
        left -= chunk;
    }
    Ok(())
}

/// A committed event as read from `factstr_events`.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    /// The last sequence number of the event's committed batch.
    pub(crate) batch_last_sequence_number: u64,
    pub(crate) record: EventRecord,
}

/// Decodes a row of `sequence_number, batch_last_sequence_number,
/// occurred_at_micros, event_type, payload` (the event reads of
/// [`sql`](crate::sql)).
pub(crate) fn decode_event(row: &Row<'_>) -> Result<StoredEvent, EventStoreError> {
    let reading = "reading an event row";
    let sequence_number = sequence_number(row.get(0).or_failed(reading)?)?;
    let batch_last_sequence_number = from_stored(row.get(1).or_failed(reading)?, "batch end")?;
    let occurred_at = time_from_stored_micros(row.get(2).or_failed(reading)?)?;
    let event_type: String = row.get(3).or_failed(reading)?;
    let payload_text = row
        .get_ref(4)
        .and_then(|value| value.as_str().map_err(Into::into))
        .or_failed(reading)?;
    let payload: Value = serde_json::from_str(payload_text).map_err(|error| {
        corrupt(
            "payload",
            format_args!("event {sequence_number} does not hold JSON ({error})"),
        )
    })?;
    Ok(StoredEvent {
        batch_last_sequence_number,
        record: EventRecord {
            sequence_number,
            occurred_at,
            event_type,
            payload,
        },
    })
}

/// A stored sequence number.
pub(crate) fn sequence_number(stored: i64) -> Result<u64, EventStoreError> {
    from_stored(stored, "sequence number")
}

/// A stored durable cursor.
pub(crate) fn cursor(stored: i64) -> Result<u64, EventStoreError> {
    from_stored(stored, "durable cursor")
}
