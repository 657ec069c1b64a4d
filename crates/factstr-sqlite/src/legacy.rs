//! The log of the published factstr-sqlite 0.3.2 to 0.5.2 (one layout):
//! recognising its tables, bringing it into the FACTSTR tables when a file
//! is first opened, and checking on later opens that it has not grown since.
//!
//! # The 0.5.x layout
//!
//! ```text
//! events             (sequence_number INTEGER PRIMARY KEY, occurred_at TEXT,
//!                     event_type TEXT, payload TEXT)
//! append_batches     (first_sequence_number INTEGER PRIMARY KEY,
//!                     last_sequence_number INTEGER)
//! store_metadata     (key TEXT PRIMARY KEY, value TEXT)
//! subscriber_cursors (subscriber_id TEXT PRIMARY KEY, event_query TEXT,
//!                     last_processed_sequence_number INTEGER)
//! ```
//!
//! `occurred_at` is RFC 3339 text with up to nanoseconds, one per event;
//! `payload` and `event_query` are JSON text (`event_query` has the fields of
//! `EventQuery`); a cursor is the last sequence number the durable stream
//! processed. `store_metadata` holds `store_format_version = 1`, and from
//! 0.5.1 on, in files created by 0.5.1 or later,
//! `append_batch_boundary_format = sparse_v1`.
//!
//! Batch rows: up to 0.5.0, `append_batches` has a row for every batch;
//! 0.5.1 and later write rows only for batches of two or more events (also
//! into older, unmarked files). Either way a row is one batch, and an event
//! that no row covers was committed alone, so the migration takes each row
//! as a batch and every other event as a batch of its own. Without the
//! marker nothing guarantees the rows are complete: a batch whose row is
//! missing cannot be told apart from single events, and its events are
//! delivered one by one.
//!
//! The old tables are only read, never changed, so the file still opens
//! with 0.5.x.

use std::path::Path;

use chrono::DateTime;
use factstr::backend::encode_durable_query;
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::to_stored;
use factstr::{EventQuery, EventStoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::SqliteResultExt;
use crate::index::{self, IndexDocuments};

/// The 0.5.x tables and their columns (name, declared type), in order.
const TABLES: [(&str, &[(&str, &str)]); 4] = [
    (
        "append_batches",
        &[
            ("first_sequence_number", "INTEGER"),
            ("last_sequence_number", "INTEGER"),
        ],
    ),
    (
        "events",
        &[
            ("sequence_number", "INTEGER"),
            ("occurred_at", "TEXT"),
            ("event_type", "TEXT"),
            ("payload", "TEXT"),
        ],
    ),
    ("store_metadata", &[("key", "TEXT"), ("value", "TEXT")]),
    (
        "subscriber_cursors",
        &[
            ("subscriber_id", "TEXT"),
            ("event_query", "TEXT"),
            ("last_processed_sequence_number", "INTEGER"),
        ],
    ),
];

/// The `store_metadata` rows 0.5.x writes: the format version (always) and
/// the boundary marker (0.5.1 and later).
const FORMAT_VERSION: (&str, &str) = ("store_format_version", "1");
const BOUNDARY_MARKER: (&str, &str) = ("append_batch_boundary_format", "sparse_v1");

/// Payload index documents written per statement while migrating.
const INDEX_DOCUMENTS_PER_STATEMENT: u64 = 512;

/// Whether `tables` include every 0.5.x table name.
pub(crate) fn has_tables(tables: &[String]) -> bool {
    TABLES
        .iter()
        .all(|(name, _)| tables.iter().any(|table| table == name))
}

/// Whether `tables` are exactly the 0.5.x table names.
pub(crate) fn is_exactly_tables(tables: &[String]) -> bool {
    tables.len() == TABLES.len() && has_tables(tables)
}

/// Checks that the 0.5.x tables have exactly the columns and metadata 0.5.x
/// writes; anything else is refused, so that no other layout is read as a
/// 0.5.x log.
pub(crate) fn check_layout(connection: &Connection, path: &Path) -> Result<(), EventStoreError> {
    let reading = |error: rusqlite::Error| {
        EventStoreError::backend(format!(
            "cannot read the factstr 0.5.x tables of {}: {error}",
            path.display()
        ))
    };
    for (table, expected) in TABLES {
        let mut statement = connection
            .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(reading)?;
        let columns = statement
            .query_map([table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(reading)?;
        let matches = columns.len() == expected.len()
            && columns.iter().zip(expected).all(
                |((name, kind), (expected_name, expected_kind))| {
                    name == expected_name && kind.eq_ignore_ascii_case(expected_kind)
                },
            );
        if !matches {
            let found: Vec<String> = columns
                .iter()
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect();
            return Err(not_a_05_log(
                path,
                &format!(
                    "its table {table} has the columns ({}) where factstr 0.5.x has ({})",
                    found.join(", "),
                    expected
                        .iter()
                        .map(|(name, kind)| format!("{name} {kind}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let mut statement = connection
        .prepare("SELECT key, value FROM store_metadata ORDER BY key")
        .map_err(reading)?;
    let metadata = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(reading)?;
    for (key, value) in &metadata {
        let known = [FORMAT_VERSION, BOUNDARY_MARKER]
            .iter()
            .any(|(known_key, known_value)| key == known_key && value == known_value);
        if !known {
            return Err(not_a_05_log(
                path,
                &format!(
                    "its store_metadata holds {key} = {value:?}, which factstr 0.5.x does not write"
                ),
            ));
        }
    }
    if !metadata.iter().any(|(key, _)| key == FORMAT_VERSION.0) {
        return Err(not_a_05_log(
            path,
            "its store_metadata has no store_format_version",
        ));
    }
    Ok(())
}

fn not_a_05_log(path: &Path, reason: &str) -> EventStoreError {
    EventStoreError::invalid_input(format!(
        "{} has the tables of a factstr 0.5.x log, but {reason}; it is not a layout this \
         version converts, and was left unchanged",
        path.display()
    ))
}

/// What a migration brought over.
#[derive(Debug)]
pub(crate) struct Migrated {
    pub(crate) events: u64,
    pub(crate) durable_streams: u64,
}

/// Copies the 0.5.x log into the FACTSTR tables, which must exist and be
/// empty. Runs inside the caller's write transaction, so the copy is
/// all-or-nothing.
pub(crate) fn migrate(connection: &Connection, path: &Path) -> Result<Migrated, EventStoreError> {
    let batches = read_batch_rows(connection, path)?;
    let last_sequence_number = copy_events(connection, path, &batches)?;
    if let Some((first, last)) = batches
        .iter()
        .find(|(_, last)| *last > last_sequence_number)
    {
        return Err(corrupt_log(
            path,
            &format!(
                "its append_batches row {first}..{last} ends after the last event \
                 ({last_sequence_number})"
            ),
        ));
    }
    let durable_streams = copy_durable_cursors(connection, path, last_sequence_number)?;
    Ok(Migrated {
        events: last_sequence_number,
        durable_streams,
    })
}

/// The `append_batches` rows, ascending and checked not to overlap.
fn read_batch_rows(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<(u64, u64)>, EventStoreError> {
    let mut statement = connection
        .prepare(
            "SELECT first_sequence_number, last_sequence_number FROM append_batches \
             ORDER BY first_sequence_number",
        )
        .or_failed("reading the factstr 0.5.x batches")?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .or_failed("reading the factstr 0.5.x batches")?;
    let mut batches = Vec::with_capacity(rows.len());
    let mut previous_last = 0_u64;
    for (first, last) in rows {
        let range = u64::try_from(first)
            .ok()
            .zip(u64::try_from(last).ok())
            .filter(|(first, last)| *first > previous_last && first <= last);
        let Some((first, last)) = range else {
            return Err(corrupt_log(
                path,
                &format!(
                    "its append_batches row {first}..{last} is not a range of sequence numbers \
                     after the row before it (which ends at {previous_last})"
                ),
            ));
        };
        previous_last = last;
        batches.push((first, last));
    }
    Ok(batches)
}

/// Copies every event with its batch boundary and payload index document;
/// returns the last sequence number (0 for an empty log).
fn copy_events(
    connection: &Connection,
    path: &Path,
    batches: &[(u64, u64)],
) -> Result<u64, EventStoreError> {
    let reading = "reading the factstr 0.5.x events";
    let mut events = connection
        .prepare(
            "SELECT sequence_number, occurred_at, event_type, payload FROM events \
             ORDER BY sequence_number",
        )
        .or_failed(reading)?;
    let mut insert = connection
        .prepare(
            "INSERT INTO factstr_events (sequence_number, batch_last_sequence_number, \
             occurred_at_micros, event_type, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .or_failed("copying the factstr 0.5.x events")?;
    let mut index_documents = IndexDocuments::new();
    let mut rows = events.query([]).or_failed(reading)?;
    let mut batches = batches.iter().peekable();
    let mut sequence_number = 0_u64;
    while let Some(row) = rows.next().or_failed(reading)? {
        sequence_number += 1;
        let stored: i64 = row.get(0).or_failed(reading)?;
        if u64::try_from(stored).ok() != Some(sequence_number) {
            return Err(corrupt_log(
                path,
                &format!(
                    "its events do not number 1, 2, 3, ... without gaps: \
                     event {stored} follows {}",
                    sequence_number - 1
                ),
            ));
        }
        let occurred_at =
            old_occurred_at(row.get_ref(1).or_failed(reading)?, sequence_number, path)?;
        let event_type = old_text(
            row.get_ref(2).or_failed(reading)?,
            "event_type",
            sequence_number,
            path,
        )?;
        let payload_text = old_text(
            row.get_ref(3).or_failed(reading)?,
            "payload",
            sequence_number,
            path,
        )?;
        let payload: Value = serde_json::from_str(payload_text).map_err(|error| {
            corrupt_log(
                path,
                &format!("the payload of event {sequence_number} is not JSON ({error})"),
            )
        })?;

        while batches
            .peek()
            .is_some_and(|(_, last)| *last < sequence_number)
        {
            batches.next();
        }
        let batch_last = match batches.peek() {
            Some((first, last)) if *first <= sequence_number => *last,
            _ => sequence_number,
        };
        let payload_json = serde_json::to_string(&payload).map_err(|error| {
            corrupt_log(
                path,
                &format!(
                    "the payload of event {sequence_number} cannot be written as JSON ({error})"
                ),
            )
        })?;
        insert
            .execute(params![
                to_stored(sequence_number),
                to_stored(batch_last),
                occurred_at,
                event_type,
                payload_json,
            ])
            .or_failed("copying the factstr 0.5.x events")?;
        index_documents.push(sequence_number, &payload_terms(&payload));
        if index_documents.len() == INDEX_DOCUMENTS_PER_STATEMENT {
            write_index_documents(connection, &mut index_documents)?;
        }
    }
    write_index_documents(connection, &mut index_documents)?;
    index::set_indexed_through(connection, sequence_number)
        .or_failed("writing the payload index of the factstr 0.5.x events")?;
    Ok(sequence_number)
}

fn write_index_documents(
    connection: &Connection,
    documents: &mut IndexDocuments,
) -> Result<(), EventStoreError> {
    documents
        .write(connection)
        .or_failed("writing the payload index of the factstr 0.5.x events")
}

/// An `occurred_at` of 0.5.x (RFC 3339 text) as whole microseconds since
/// the Unix epoch, finer digits cut off.
fn old_occurred_at(
    value: rusqlite::types::ValueRef<'_>,
    sequence_number: u64,
    path: &Path,
) -> Result<i64, EventStoreError> {
    let text = old_text(value, "occurred_at", sequence_number, path)?;
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|error| {
        corrupt_log(
            path,
            &format!("the occurred_at {text:?} of event {sequence_number} is not an RFC 3339 time ({error})"),
        )
    })?;
    Ok(parsed.timestamp_micros())
}

fn old_text<'v>(
    value: rusqlite::types::ValueRef<'v>,
    column: &str,
    sequence_number: u64,
    path: &Path,
) -> Result<&'v str, EventStoreError> {
    value.as_str().map_err(|_| {
        corrupt_log(
            path,
            &format!("the {column} of event {sequence_number} is not text"),
        )
    })
}

/// Copies every durable cursor with its query in the stored form of
/// FACTSTR; returns how many.
fn copy_durable_cursors(
    connection: &Connection,
    path: &Path,
    last_sequence_number: u64,
) -> Result<u64, EventStoreError> {
    let reading = "reading the factstr 0.5.x durable cursors";
    let mut statement = connection
        .prepare(
            "SELECT subscriber_id, event_query, last_processed_sequence_number \
             FROM subscriber_cursors ORDER BY subscriber_id",
        )
        .or_failed(reading)?;
    let cursors = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .or_failed(reading)?;
    let mut insert = connection
        .prepare("INSERT INTO factstr_durable_streams (name, query, cursor) VALUES (?1, ?2, ?3)")
        .or_failed("copying the factstr 0.5.x durable cursors")?;
    for (name, old_query, cursor) in &cursors {
        let query_json =
            stored_query(name, old_query).map_err(|reason| corrupt_log(path, &reason))?;
        if u64::try_from(*cursor).map_or(true, |cursor| cursor > last_sequence_number) {
            return Err(corrupt_log(
                path,
                &format!(
                    "the cursor {cursor} of durable stream `{name}` is outside the log \
                     (0 to {last_sequence_number})"
                ),
            ));
        }
        insert
            .execute(params![name, query_json, cursor])
            .or_failed("copying the factstr 0.5.x durable cursors")?;
    }
    Ok(cursors.len() as u64)
}

/// A 0.5.x durable query in the form FACTSTR stores: the same JSON fields,
/// normalized as the stream dispatcher compares them.
fn stored_query(name: &str, old_query: &str) -> Result<String, String> {
    let query: EventQuery = serde_json::from_str(old_query).map_err(|error| {
        format!("the stored query of durable stream `{name}` is not a 0.5.x query ({error}): {old_query}")
    })?;
    encode_durable_query(name, &query).map_err(|error| error.to_string())
}

fn corrupt_log(path: &Path, reason: &str) -> EventStoreError {
    EventStoreError::backend(format!(
        "cannot bring the factstr 0.5.x log of {} over: {reason}; nothing was changed",
        path.display()
    ))
}

/// With both logs in the file, checks that the FACTSTR log holds the 0.5.x
/// log: that 0.5.x did not append to the file after it was migrated. Its
/// newest event must be in the FACTSTR log, equal (an event appended by
/// 0.5.x after the migration has a sequence number that the FACTSTR log
/// lacks or gave to an event of its own). Only reads.
pub(crate) fn check_contained(connection: &Connection, path: &Path) -> Result<(), EventStoreError> {
    let reading = "comparing the factstr 0.5.x log with the FACTSTR log";
    let newest_old = connection
        .query_row(
            "SELECT sequence_number, occurred_at, event_type, payload FROM events \
             ORDER BY sequence_number DESC LIMIT 1",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .optional()
        .or_failed(reading)?;
    let Some((sequence_number, old_occurred_at_text, old_type, old_payload)) = newest_old else {
        return Ok(());
    };
    let ours = connection
        .query_row(
            "SELECT occurred_at_micros, event_type, payload FROM factstr_events \
             WHERE sequence_number = ?1",
            [sequence_number],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()
        .or_failed(reading)?;
    let difference = match ours {
        None => "is missing from the FACTSTR log",
        Some((micros, event_type, payload)) => {
            let same_time = DateTime::parse_from_rfc3339(&old_occurred_at_text)
                .is_ok_and(|old| old.timestamp_micros() == micros);
            let same_payload = matches!(
                (
                    serde_json::from_str::<Value>(&old_payload),
                    serde_json::from_str::<Value>(&payload),
                ),
                (Ok(old), Ok(new)) if old == new
            );
            if same_time && event_type == old_type && same_payload {
                return Ok(());
            }
            "differs from the FACTSTR event of that sequence number"
        }
    };
    Err(EventStoreError::invalid_input(format!(
        "{path} holds two event logs, the FACTSTR log and a factstr 0.5.x log (tables events, \
         append_batches, store_metadata, subscriber_cursors), and the 0.5.x log has events \
         the FACTSTR log lacks: its newest event, {sequence_number}, {difference}. \
         Probably factstr 0.5.x appended to the file after FACTSTR had migrated it. \
         Nothing was changed; keep one of the logs: to keep the 0.5.x log, drop the tables \
         factstr_metadata, factstr_events, factstr_payload_index and factstr_durable_streams \
         and open the file again, which migrates the 0.5.x log anew (what was appended \
         through FACTSTR since the first migration is lost); to keep the FACTSTR log, drop \
         or rename the 0.5.x tables",
        path = path.display()
    )))
}
