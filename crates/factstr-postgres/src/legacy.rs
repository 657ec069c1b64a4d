//! The log of the published factstr-postgres 0.5.x: recognising its tables
//! in the store's schema, bringing it into the FACTSTR tables, and checking
//! on later connects that it has not grown since.
//!
//! # The 0.5.x layout
//!
//! ```text
//! events                 (sequence_number bigint PRIMARY KEY,
//!                         occurred_at timestamptz, event_type text, payload jsonb)
//! append_batches         (first_sequence_number bigint PRIMARY KEY,
//!                         last_sequence_number bigint)
//! durable_stream_cursors (durable_stream_id text PRIMARY KEY, event_query text,
//!                         last_processed_sequence_number bigint)
//! store_metadata         (key text PRIMARY KEY, value text)      -- from 0.5.1 on
//! ```
//!
//! `event_query` is JSON text with the fields of `EventQuery`; a cursor is
//! the last sequence number the durable stream processed. `store_metadata`
//! holds `store_format_version = 1` and, in schemas created by 0.5.1 or
//! later, `append_batch_boundary_format = sparse_v1`. 0.5.0 kept a row in
//! `append_batches` for every batch; 0.5.1 and later only for batches of two
//! or more events (also in older, unmarked schemas). Either way a row is one
//! batch and an event no row covers was committed alone; without the marker,
//! a batch whose row is missing cannot be told apart from single events, and
//! its events are delivered one by one.
//!
//! The 0.5.x tables are only read, never changed, so the schema still works
//! with 0.5.x.

use factstr::backend::encode_durable_query;
use factstr::{EventQuery, EventStoreError};
use sqlx::PgConnection;

use crate::error::database_failure;
use crate::schema::SchemaNames;

/// The tables every 0.5.x schema has, with their columns (name, type) in
/// order.
const TABLES: [(&str, &[(&str, &str)]); 3] = [
    (
        "append_batches",
        &[
            ("first_sequence_number", "bigint"),
            ("last_sequence_number", "bigint"),
        ],
    ),
    (
        "durable_stream_cursors",
        &[
            ("durable_stream_id", "text"),
            ("event_query", "text"),
            ("last_processed_sequence_number", "bigint"),
        ],
    ),
    (
        "events",
        &[
            ("sequence_number", "bigint"),
            ("occurred_at", "timestamp with time zone"),
            ("event_type", "text"),
            ("payload", "jsonb"),
        ],
    ),
];

/// The metadata table 0.5.1 and later add.
const METADATA_TABLE: (&str, &[(&str, &str)]) =
    ("store_metadata", &[("key", "text"), ("value", "text")]);

/// The `store_metadata` rows 0.5.x writes.
const FORMAT_VERSION: (&str, &str) = ("store_format_version", "1");
const BOUNDARY_MARKER: (&str, &str) = ("append_batch_boundary_format", "sparse_v1");

/// The qualified, quoted names of the 0.5.x tables of one schema.
#[derive(Debug)]
pub(crate) struct LegacyTables {
    events: String,
    append_batches: String,
    durable_stream_cursors: String,
}

/// What a migration brought over.
#[derive(Debug)]
pub(crate) struct Migrated {
    pub(crate) events: u64,
    pub(crate) durable_streams: u64,
}

/// Finds the 0.5.x tables in the schema. `None` when any of `events`,
/// `append_batches` and `durable_stream_cursors` is missing (the schema
/// may hold other applications' tables, such as an `events` of their own);
/// refuses when all three are there but they, or `store_metadata`, are not
/// what 0.5.x writes.
pub(crate) async fn find(
    connection: &mut PgConnection,
    names: &SchemaNames,
) -> Result<Option<LegacyTables>, EventStoreError> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') \
           AND c.relname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum",
    )
    .bind(names.schema())
    .bind(
        TABLES
            .iter()
            .chain([&METADATA_TABLE])
            .map(|(table, _)| *table)
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| database_failure("cannot look for factstr 0.5.x tables", &error))?;
    let columns_of = |table: &str| -> Vec<(&str, &str)> {
        columns
            .iter()
            .filter(|(name, _, _)| name == table)
            .map(|(_, column, kind)| (column.as_str(), kind.as_str()))
            .collect()
    };
    if TABLES.iter().any(|(table, _)| columns_of(table).is_empty()) {
        return Ok(None);
    }
    for (table, expected) in TABLES {
        check_columns(names, table, &columns_of(table), expected)?;
    }
    let metadata = columns_of(METADATA_TABLE.0);
    if !metadata.is_empty() {
        check_columns(names, METADATA_TABLE.0, &metadata, METADATA_TABLE.1)?;
        check_metadata(connection, names).await?;
    }
    Ok(Some(LegacyTables {
        events: names.table("events"),
        append_batches: names.table("append_batches"),
        durable_stream_cursors: names.table("durable_stream_cursors"),
    }))
}

fn check_columns(
    names: &SchemaNames,
    table: &str,
    found: &[(&str, &str)],
    expected: &[(&str, &str)],
) -> Result<(), EventStoreError> {
    if found == expected {
        return Ok(());
    }
    let list = |columns: &[(&str, &str)]| {
        columns
            .iter()
            .map(|(name, kind)| format!("{name} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(unknown_layout(
        names,
        &format!(
            "its table {table} has the columns ({}) where factstr 0.5.x has ({})",
            list(found),
            list(expected)
        ),
    ))
}

async fn check_metadata(
    connection: &mut PgConnection,
    names: &SchemaNames,
) -> Result<(), EventStoreError> {
    let sql = format!(
        "SELECT key, value FROM {} ORDER BY key",
        names.table(METADATA_TABLE.0)
    );
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| {
            database_failure("cannot read the factstr 0.5.x store_metadata", &error)
        })?;
    for (key, value) in &rows {
        let known = [FORMAT_VERSION, BOUNDARY_MARKER]
            .iter()
            .any(|(known_key, known_value)| key == known_key && value == known_value);
        if !known {
            return Err(unknown_layout(
                names,
                &format!(
                    "its store_metadata holds {key} = {value:?}, which factstr 0.5.x does not write"
                ),
            ));
        }
    }
    if !rows.iter().any(|(key, _)| key == FORMAT_VERSION.0) {
        return Err(unknown_layout(
            names,
            "its store_metadata has no store_format_version",
        ));
    }
    Ok(())
}

fn unknown_layout(names: &SchemaNames, reason: &str) -> EventStoreError {
    EventStoreError::invalid_input(format!(
        "schema {} holds the tables of a factstr 0.5.x log (events, append_batches, \
         durable_stream_cursors), but {reason}; it is not a layout this version converts, \
         and nothing was changed (use another schema, or rename those tables)",
        names.schema()
    ))
}

/// Brings the 0.5.x log over if the FACTSTR log is empty and has no
/// durable stream (the FACTSTR tables are new, or an earlier build created
/// them next to the 0.5.x tables without using them); otherwise checks
/// that the 0.5.x log has nothing the FACTSTR log lacks. Runs inside the
/// caller's transaction, which holds the creation lock; takes the append
/// lock so that no append of another process interleaves.
pub(crate) async fn reconcile(
    transaction: &mut PgConnection,
    names: &SchemaNames,
    legacy: &LegacyTables,
) -> Result<Option<Migrated>, EventStoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(names.append_lock_key())
        .execute(&mut *transaction)
        .await
        .map_err(|error| database_failure("cannot lock the log for the migration", &error))?;
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {}) AND NOT EXISTS (SELECT 1 FROM {})",
        names.events(),
        names.durable_streams()
    );
    let factstr_log_is_empty: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *transaction)
        .await
        .map_err(|error| database_failure("cannot read the FACTSTR log", &error))?;
    if factstr_log_is_empty {
        migrate(transaction, names, legacy).await.map(Some)
    } else {
        check_contained(transaction, names, legacy)
            .await
            .map(|()| None)
    }
}

async fn migrate(
    transaction: &mut PgConnection,
    names: &SchemaNames,
    legacy: &LegacyTables,
) -> Result<Migrated, EventStoreError> {
    let failed =
        |error: sqlx::Error| database_failure("cannot bring the factstr 0.5.x log over", &error);
    // The copy is one statement over the whole log; a statement timeout
    // set for the store's queries must not cut it off.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
    let sql = format!(
        "SELECT COUNT(*), COALESCE(MIN(sequence_number), 1), COALESCE(MAX(sequence_number), 0) \
         FROM {}",
        legacy.events
    );
    let (count, first, last): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *transaction)
        .await
        .map_err(failed)?;
    if first != 1 || count != last {
        return Err(corrupt_log(
            names,
            &format!(
                "its {count} events are not numbered 1, 2, 3, ... without gaps \
                 (they run from {first} to {last})"
            ),
        ));
    }
    let sql = format!(
        "SELECT first_sequence_number, last_sequence_number, COALESCE(previous_last, 0) FROM ( \
             SELECT first_sequence_number, last_sequence_number, \
                    lag(last_sequence_number) OVER (ORDER BY first_sequence_number) AS previous_last \
             FROM {}) AS rows \
         WHERE first_sequence_number < 1 OR first_sequence_number > last_sequence_number \
            OR first_sequence_number <= previous_last OR last_sequence_number > $1 \
         ORDER BY first_sequence_number LIMIT 1",
        legacy.append_batches
    );
    let invalid_batch: Option<(i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(last)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(failed)?;
    if let Some((first, last_of_row, previous_last)) = invalid_batch {
        return Err(corrupt_log(
            names,
            &format!(
                "its append_batches row {first}..{last_of_row} is not a range of events \
                 1 to {last} after the row before it (which ends at {previous_last})"
            ),
        ));
    }
    // The batch row covering an event is the one with the greatest first
    // sequence number not after it, if it reaches that far.
    let sql = format!(
        "INSERT INTO {events} (sequence_number, batch_last_sequence_number, occurred_at, \
                               event_type, payload) \
         SELECT e.sequence_number, COALESCE(b.last_sequence_number, e.sequence_number), \
                e.occurred_at, e.event_type, e.payload::json \
         FROM {old_events} e \
         LEFT JOIN LATERAL ( \
             SELECT last_sequence_number FROM {batches} \
             WHERE first_sequence_number <= e.sequence_number \
             ORDER BY first_sequence_number DESC LIMIT 1) b \
           ON b.last_sequence_number >= e.sequence_number \
         ORDER BY e.sequence_number",
        events = names.events(),
        old_events = legacy.events,
        batches = legacy.append_batches,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;

    let sql = format!(
        "SELECT durable_stream_id, event_query, last_processed_sequence_number FROM {} \
         ORDER BY durable_stream_id",
        legacy.durable_stream_cursors
    );
    let cursors: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *transaction)
        .await
        .map_err(failed)?;
    let insert = format!(
        "INSERT INTO {} (name, query, cursor) VALUES ($1, $2, $3)",
        names.durable_streams()
    );
    for (name, old_query, cursor) in &cursors {
        let query = stored_query(name, old_query).map_err(|reason| corrupt_log(names, &reason))?;
        if !(0..=last).contains(cursor) {
            return Err(corrupt_log(
                names,
                &format!(
                    "the cursor {cursor} of durable stream `{name}` is outside the log \
                     (0 to {last})"
                ),
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
            .bind(name)
            .bind(query)
            .bind(cursor)
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
    }
    Ok(Migrated {
        events: u64::try_from(last).unwrap_or(0),
        durable_streams: cursors.len() as u64,
    })
}

/// A 0.5.x durable query in the form FACTSTR stores: the same JSON fields,
/// normalized as the stream dispatcher compares them.
fn stored_query(name: &str, old_query: &str) -> Result<String, String> {
    let query: EventQuery = serde_json::from_str(old_query).map_err(|error| {
        format!(
            "the stored query of durable stream `{name}` is not a 0.5.x query ({error}): {old_query}"
        )
    })?;
    encode_durable_query(name, &query).map_err(|error| error.to_string())
}

fn corrupt_log(names: &SchemaNames, reason: &str) -> EventStoreError {
    EventStoreError::backend(format!(
        "cannot bring the factstr 0.5.x log of schema {} over: {reason}; nothing was changed",
        names.schema()
    ))
}

/// Checks that 0.5.x did not append after the migration: the newest 0.5.x
/// event must be in the FACTSTR log, equal (an event appended by 0.5.x
/// later has a sequence number that the FACTSTR log lacks or gave to an
/// event of its own).
async fn check_contained(
    transaction: &mut PgConnection,
    names: &SchemaNames,
    legacy: &LegacyTables,
) -> Result<(), EventStoreError> {
    let sql = format!(
        "SELECT o.sequence_number, n.sequence_number IS NOT NULL, \
                COALESCE(n.event_type = o.event_type AND n.payload::jsonb = o.payload \
                         AND n.occurred_at = o.occurred_at, false) \
         FROM (SELECT * FROM {old_events} ORDER BY sequence_number DESC LIMIT 1) o \
         LEFT JOIN {events} n ON n.sequence_number = o.sequence_number",
        old_events = legacy.events,
        events = names.events(),
    );
    let newest: Option<(i64, bool, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| {
            database_failure(
                "cannot compare the factstr 0.5.x log with the FACTSTR log",
                &error,
            )
        })?;
    let (sequence_number, present) = match newest {
        None | Some((_, true, true)) => return Ok(()),
        Some((sequence_number, present, _)) => (sequence_number, present),
    };
    let difference = if present {
        "differs from the FACTSTR event of that sequence number"
    } else {
        "is missing from the FACTSTR log"
    };
    Err(EventStoreError::invalid_input(format!(
        "schema {schema} holds two event logs, the FACTSTR log and a factstr 0.5.x log \
         (tables events, append_batches, durable_stream_cursors, store_metadata), and the \
         0.5.x log has events the FACTSTR log lacks: its newest event, {sequence_number}, \
         {difference}. Probably factstr 0.5.x appended to the schema after FACTSTR had \
         migrated it. Nothing was changed; keep one of the logs: to keep the 0.5.x log, \
         drop the tables factstr_events, factstr_durable_streams and factstr_metadata and \
         connect again, which migrates the 0.5.x log anew (what was appended through \
         FACTSTR since the first migration is lost); to keep the FACTSTR log, drop or \
         rename the 0.5.x tables",
        schema = names.schema(),
    )))
}
