//! What operating a store needs beyond `EventStore`
//! ([`StoreOperations`]): figures about the log, reading it batch by batch,
//! moving and deleting durable cursors, and writing batches committed
//! elsewhere (import, copy).
//!
//! Everything that writes runs its own `BEGIN IMMEDIATE` transaction on the
//! writer connection while holding it, so no group of this store commits in
//! between and other processes wait for the file's write lock. An import
//! is published to this store's streams after its commit; other processes
//! see it as they see any commit of another connection. A durable stream is
//! moved or deleted only while this module holds its claim file, so never
//! while it runs in any process.

use std::path::Path;

use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::{from_stored, time_from_stored_micros, to_stored};
use factstr::backend::{
    DurableStreamInfo, LogStats, StoreOperations, check_imported_batches, decode_durable_query,
    encode_durable_query, normalized_stream_query, read_whole_batches,
};
use factstr::{EventQuery, EventRecord, EventStoreError};
use rusqlite::{Connection, params};

use crate::durable::{self, DurableStreamClaims};
use crate::error::SqliteResultExt;
use crate::index::IndexDocuments;
use crate::store::SqliteStore;
use crate::{read, rows};

const LOG_FIGURES: &str = "SELECT COUNT(*), \
     COALESCE(SUM(sequence_number = batch_last_sequence_number), 0), \
     MIN(occurred_at_micros), MAX(occurred_at_micros), COALESCE(MAX(sequence_number), 0) \
     FROM factstr_events";
const FACTS_PER_TYPE: &str = "SELECT event_type, COUNT(*) FROM factstr_events \
     GROUP BY event_type ORDER BY event_type";
const DURABLE_STREAMS: &str =
    "SELECT name, query, cursor FROM factstr_durable_streams ORDER BY name";
const SET_CURSOR: &str = "INSERT INTO factstr_durable_streams (name, query, cursor) \
     VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor";
const DELETE_DURABLE_STREAM: &str = "DELETE FROM factstr_durable_streams WHERE name = ?1";

impl StoreOperations for SqliteStore {
    fn log_stats(&self) -> Result<LogStats, EventStoreError> {
        let (_, readers, _, _) = self.parts();
        readers.read(|connection| {
            let reading = "reading the log's figures";
            let (facts, batches, first, last, head) = connection
                .query_row(LOG_FIGURES, [], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })
                .or_failed(reading)?;
            let mut statement = connection.prepare(FACTS_PER_TYPE).or_failed(reading)?;
            let facts_per_type = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .or_failed(reading)?;
            Ok(LogStats {
                facts: from_stored(facts, "fact count")?,
                batches: from_stored(batches, "batch count")?,
                head: rows::sequence_number(head)?,
                first_commit: first.map(time_from_stored_micros).transpose()?,
                last_commit: last.map(time_from_stored_micros).transpose()?,
                facts_per_type: facts_per_type
                    .into_iter()
                    .map(|(event_type, facts)| Ok((event_type, from_stored(facts, "fact count")?)))
                    .collect::<Result<_, EventStoreError>>()?,
            })
        })
    }

    fn read_batches(
        &self,
        after: u64,
        max_events: usize,
    ) -> Result<Vec<Vec<EventRecord>>, EventStoreError> {
        let (_, _, log, _) = self.parts();
        read_whole_batches(log, after, max_events)
    }

    fn durable_streams(&self) -> Result<Vec<DurableStreamInfo>, EventStoreError> {
        let (_, readers, _, _) = self.parts();
        let stored = readers.read(|connection| {
            let reading = "reading the durable streams";
            let mut statement = connection.prepare(DURABLE_STREAMS).or_failed(reading)?;
            statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .or_failed(reading)
        })?;
        let claims = self.claims()?;
        stored
            .into_iter()
            .map(|(name, query_json, cursor)| {
                // A claim this module can take is held by no stream; one it
                // cannot take is held by a running stream (or unreadable,
                // which an operator must treat the same way).
                let active = match claims.claim(&name) {
                    Ok(()) => {
                        claims.release(&name);
                        false
                    }
                    Err(_) => true,
                };
                Ok(DurableStreamInfo {
                    query: decode_durable_query(&name, &query_json)?,
                    cursor: rows::cursor(cursor)?,
                    active: Some(active),
                    name,
                })
            })
            .collect()
    }

    fn set_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
        cursor: u64,
    ) -> Result<(), EventStoreError> {
        let query_json = encode_durable_query(name, query)?;
        let normalized = normalized_stream_query(query);
        self.while_claimed(name, |connection| {
            let (head, _) = read::last_committed(connection)?;
            if cursor > head {
                return Err(EventStoreError::invalid_input(format!(
                    "cursor {cursor} of durable stream `{name}` is beyond the log's head {head}"
                )));
            }
            let stored = durable::stored(connection, name)
                .or_failed_on(connection, "reading a durable stream")?;
            if let Some((stored_json, _)) = stored
                && decode_durable_query(name, &stored_json)? != normalized
            {
                return Err(EventStoreError::invalid_input(format!(
                    "durable stream `{name}` is stored with another query ({stored_json}) \
                     than the one given ({query_json})"
                )));
            }
            connection
                .execute(SET_CURSOR, params![name, query_json, to_stored(cursor)])
                .or_failed_on(connection, "moving a durable cursor")?;
            Ok(())
        })
    }

    fn delete_durable_stream(&self, name: &str) -> Result<bool, EventStoreError> {
        self.while_claimed(name, |connection| {
            let deleted = connection
                .execute(DELETE_DURABLE_STREAM, [name])
                .or_failed_on(connection, "deleting a durable stream")?;
            Ok(deleted > 0)
        })
    }

    fn import_batches(&self, batches: &[Vec<EventRecord>]) -> Result<(), EventStoreError> {
        let Some(last_batch) = batches.last() else {
            return Ok(());
        };
        let prepared = ImportRows::of(batches)?;
        let (writer, _, _, dispatcher) = self.parts();
        writer.in_transaction("committing imported batches", |connection| {
            let (head, head_time) = read::last_committed(connection)?;
            check_imported_batches(head, batches)?;
            if let (Some(head_time), Some(first)) = (head_time, batches[0].first())
                && first.occurred_at < head_time
            {
                return Err(EventStoreError::invalid_input(format!(
                    "the first imported batch was committed at {}, before the log's \
                     last commit at {head_time}",
                    first.occurred_at
                )));
            }
            prepared.write(connection)
        })?;
        // Publishing the last batch is enough: a stream that has not seen
        // the ones before it reads them from the log first.
        if let Some(last) = last_batch.last() {
            dispatcher.publish_with(last.sequence_number, || last_batch.clone());
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Claims for durable stream names of this store's file, apart from the
    /// ones its streams hold (a name one of them holds cannot be claimed
    /// here either).
    fn claims(&self) -> Result<DurableStreamClaims, EventStoreError> {
        let file = std::path::absolute(self.database_path()).map_err(|error| {
            EventStoreError::backend(format!(
                "cannot resolve the database path {}: {error}",
                self.database_path().display()
            ))
        })?;
        Ok(DurableStreamClaims::new(Path::new(&file)))
    }

    /// Runs `work` in a write transaction while holding the claim on
    /// durable stream `name`: refused while the stream runs anywhere.
    fn while_claimed<T>(
        &self,
        name: &str,
        work: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let claims = self.claims()?;
        claims.claim(name)?;
        let (writer, _, _, _) = self.parts();
        let outcome = writer.in_transaction("committing a durable stream's change", work);
        claims.release(name);
        outcome
    }
}

/// Imported batches as rows: serialized before the writer connection is
/// taken, so the writer only writes.
struct ImportRows {
    /// Per event: sequence number, its batch's last, commit time, type,
    /// payload JSON.
    events: Vec<(i64, i64, i64, String, String)>,
    documents: IndexDocuments,
}

impl ImportRows {
    fn of(batches: &[Vec<EventRecord>]) -> Result<Self, EventStoreError> {
        let mut events = Vec::with_capacity(batches.iter().map(Vec::len).sum());
        let mut documents = IndexDocuments::new();
        for batch in batches {
            let batch_last = batch.last().map_or(0, |record| record.sequence_number);
            for record in batch {
                let payload_json = serde_json::to_string(&record.payload).map_err(|error| {
                    EventStoreError::invalid_input(format!(
                        "the payload of event {} cannot be written as JSON: {error}",
                        record.sequence_number
                    ))
                })?;
                documents.push(record.sequence_number, &payload_terms(&record.payload));
                events.push((
                    to_stored(record.sequence_number),
                    to_stored(batch_last),
                    record.occurred_at.timestamp_micros(),
                    record.event_type.clone(),
                    payload_json,
                ));
            }
        }
        Ok(Self { events, documents })
    }

    /// Writes the rows with the largest multi-row `INSERT`s first, then
    /// their payload index documents in one statement.
    fn write(mut self, connection: &Connection) -> Result<(), EventStoreError> {
        let rows = self.events.iter().map(
            |(sequence_number, batch_last, micros, event_type, payload_json)| {
                (
                    *sequence_number,
                    *batch_last,
                    *micros,
                    event_type.as_str(),
                    payload_json.as_str(),
                )
            },
        );
        rows::insert_events(connection, self.events.len(), rows)
            .or_failed_on(connection, "writing imported events")?;
        self.documents
            .write(connection)
            .or_failed_on(connection, "writing the payload index")
    }
}
