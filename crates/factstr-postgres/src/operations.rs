//! What operating a store needs beyond `EventStore`
//! ([`StoreOperations`]): figures about the log, reading it batch by batch,
//! moving and deleting durable cursors, and writing batches committed
//! elsewhere (import, copy).
//!
//! An import is an append transaction like the writer's: it takes the
//! schema's append lock, checks the batches against the head read under
//! it, inserts every row in one statement that also sends the commit
//! notification, and commits; so every process's live streams receive the
//! imported batches as they receive any other commit, and this store's
//! streams get them before the call returns. A durable stream is moved or
//! deleted in a transaction holding its name's advisory lock
//! (`pg_try_advisory_xact_lock` on the key a running stream holds as a
//! session lock), so never while it runs in any process.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use factstr::backend::sequence::{from_stored, to_stored};
use factstr::backend::{
    DurableStreamInfo, LogStats, StoreOperations, check_imported_batches, decode_durable_query,
    encode_durable_query, normalized_stream_query, read_whole_batches,
};
use factstr::{EventQuery, EventRecord, EventStoreError};
use sqlx::{Connection, PgConnection, PgPool};

use crate::bridge::{run_on, wait};
use crate::error::database_failure;
use crate::rows::contains_nul;
use crate::schema::SchemaNames;
use crate::store::PostgresStore;

impl StoreOperations for PostgresStore {
    fn log_stats(&self) -> Result<LogStats, EventStoreError> {
        self.run_operation(|pool, names| async move {
            let failed = |error: sqlx::Error| database_failure("reading the log's figures", &error);
            let mut connection = pool.acquire().await.map_err(failed)?;
            let mut transaction = connection.begin().await.map_err(failed)?;
            let figures = format!(
                "SELECT COUNT(*), \
                 COUNT(*) FILTER (WHERE sequence_number = batch_last_sequence_number), \
                 MIN(occurred_at), MAX(occurred_at), COALESCE(MAX(sequence_number), 0) \
                 FROM {}",
                names.events()
            );
            let (facts, batches, first_commit, last_commit, head): (
                i64,
                i64,
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
                i64,
            ) = sqlx::query_as(sqlx::AssertSqlSafe(figures))
                .fetch_one(&mut *transaction)
                .await
                .map_err(failed)?;
            let per_type = format!(
                "SELECT event_type, COUNT(*) FROM {} GROUP BY event_type ORDER BY event_type",
                names.events()
            );
            let facts_per_type: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(per_type))
                .fetch_all(&mut *transaction)
                .await
                .map_err(failed)?;
            transaction.commit().await.map_err(failed)?;
            Ok(LogStats {
                facts: from_stored(facts, "fact count")?,
                batches: from_stored(batches, "batch count")?,
                head: from_stored(head, "sequence number")?,
                first_commit,
                last_commit,
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
        self.run_operation(|pool, names| async move {
            let failed =
                |error: sqlx::Error| database_failure("reading the durable streams", &error);
            let mut connection = pool.acquire().await.map_err(failed)?;
            let mut transaction = connection.begin().await.map_err(failed)?;
            let outcome = async {
                let sql = format!(
                    "SELECT name, query, cursor FROM {} ORDER BY name",
                    names.durable_streams()
                );
                let stored: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut *transaction)
                    .await
                    .map_err(failed)?;
                let mut streams = Vec::with_capacity(stored.len());
                for (name, query_json, cursor) in stored {
                    // The lock a running stream holds; taken here only for
                    // this transaction, which is rolled back.
                    let free = try_lock_name(&mut transaction, &names, &name)
                        .await
                        .map_err(failed)?;
                    streams.push(DurableStreamInfo {
                        query: decode_durable_query(&name, &query_json)?,
                        cursor: from_stored(cursor, "durable cursor")?,
                        active: Some(!free),
                        name,
                    });
                }
                Ok(streams)
            }
            .await;
            finish(transaction, outcome, Finish::RollBack, failed).await
        })
    }

    fn set_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
        cursor: u64,
    ) -> Result<(), EventStoreError> {
        let query_json = encode_durable_query(name, query)?;
        let normalized = normalized_stream_query(query);
        let name = checked_name(name)?;
        self.run_operation(move |pool, names| async move {
            let failed = |error: sqlx::Error| {
                database_failure(
                    &format!("moving the cursor of durable stream `{name}`"),
                    &error,
                )
            };
            let mut connection = pool.acquire().await.map_err(failed)?;
            let mut transaction = connection.begin().await.map_err(failed)?;
            let outcome = async {
                refuse_active(&mut transaction, &names, &name).await?;
                let head_sql = format!(
                    "SELECT COALESCE(MAX(sequence_number), 0) FROM {}",
                    names.events()
                );
                let head: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(head_sql))
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(failed)?;
                let head = from_stored(head, "sequence number")?;
                if cursor > head {
                    return Err(EventStoreError::invalid_input(format!(
                        "cursor {cursor} of durable stream `{name}` is beyond the log's head {head}"
                    )));
                }
                let stored_sql = format!(
                    "SELECT query FROM {} WHERE name = $1",
                    names.durable_streams()
                );
                let stored: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(stored_sql))
                    .bind(&name)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(failed)?;
                if let Some(stored_json) = stored
                    && decode_durable_query(&name, &stored_json)? != normalized
                {
                    return Err(EventStoreError::invalid_input(format!(
                        "durable stream `{name}` is stored with another query ({stored_json}) \
                         than the one given ({query_json})"
                    )));
                }
                let set_sql = format!(
                    "INSERT INTO {} (name, query, cursor) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor",
                    names.durable_streams()
                );
                sqlx::query(sqlx::AssertSqlSafe(set_sql))
                    .bind(&name)
                    .bind(&query_json)
                    .bind(to_stored(cursor))
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed)?;
                Ok(())
            }
            .await;
            finish(transaction, outcome, Finish::Commit, failed).await
        })
    }

    fn delete_durable_stream(&self, name: &str) -> Result<bool, EventStoreError> {
        let name = checked_name(name)?;
        self.run_operation(move |pool, names| async move {
            let failed = |error: sqlx::Error| {
                database_failure(&format!("deleting durable stream `{name}`"), &error)
            };
            let mut connection = pool.acquire().await.map_err(failed)?;
            let mut transaction = connection.begin().await.map_err(failed)?;
            let outcome = async {
                refuse_active(&mut transaction, &names, &name).await?;
                let sql = format!("DELETE FROM {} WHERE name = $1", names.durable_streams());
                let deleted = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&name)
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed)?
                    .rows_affected();
                Ok(deleted > 0)
            }
            .await;
            finish(transaction, outcome, Finish::Commit, failed).await
        })
    }

    fn import_batches(&self, batches: &[Vec<EventRecord>]) -> Result<(), EventStoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        // Checked here as a whole; whether they follow the head is checked
        // under the append lock.
        let first = &batches[0][..];
        let Some(first) = first.first() else {
            return check_imported_batches(0, batches);
        };
        check_imported_batches(first.sequence_number.saturating_sub(1), batches)?;
        let rows = ImportRows::of(batches, first.sequence_number, first.occurred_at)?;
        self.run_operation(move |pool, names| async move {
            let mut connection = pool
                .acquire()
                .await
                .map_err(|error| database_failure("cannot connect for the import", &error))?;
            import(&mut connection, &names, &rows).await
        })?;
        // This store's streams get the import before the call returns; other
        // processes' through the commit notification.
        wait(self.publish_committed())
    }
}

impl PostgresStore {
    /// Runs `operation` with the pool and table names on the store's
    /// runtime and waits for it.
    fn run_operation<T, F>(
        &self,
        operation: impl FnOnce(PgPool, Arc<SchemaNames>) -> F,
    ) -> Result<T, EventStoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, EventStoreError>> + Send + 'static,
    {
        let (names, reader, _, runtime) = self.parts();
        run_on(runtime, operation(reader.pool().clone(), Arc::clone(names)))
    }
}

/// Imports `batches` in one append transaction on `connection`.
async fn import(
    connection: &mut PgConnection,
    names: &SchemaNames,
    rows: &ImportRows,
) -> Result<(), EventStoreError> {
    let failed = |error: sqlx::Error| database_failure("importing batches failed", &error);
    let mut transaction = connection.begin().await.map_err(failed)?;
    let outcome = async {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(names.append_lock_key())
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        let head_sql = format!(
            "SELECT sequence_number, occurred_at FROM {} ORDER BY sequence_number DESC LIMIT 1",
            names.events()
        );
        let head: Option<(i64, DateTime<Utc>)> = sqlx::query_as(sqlx::AssertSqlSafe(head_sql))
            .fetch_optional(&mut *transaction)
            .await
            .map_err(failed)?;
        let head_number = head
            .map(|(sequence_number, _)| from_stored(sequence_number, "sequence number"))
            .transpose()?
            .unwrap_or(0);
        if rows.first_sequence_number != head_number + 1 {
            return Err(EventStoreError::invalid_input(format!(
                "the imported batches start at sequence number {}, where {} comes next (the \
                 log's head is {head_number})",
                rows.first_sequence_number,
                head_number + 1
            )));
        }
        if let Some((_, head_time)) = head
            && rows.first_commit < head_time
        {
            return Err(EventStoreError::invalid_input(format!(
                "the first imported batch was committed at {}, before the log's last commit at \
                 {head_time}",
                rows.first_commit
            )));
        }
        let last = rows.sequence_numbers.last().copied().unwrap_or(0);
        let insert = format!(
            "WITH inserted AS (
                INSERT INTO {events}
                    (sequence_number, batch_last_sequence_number, occurred_at, event_type, payload)
                SELECT s, b, o, t, p::json
                FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
                    AS u(s, b, o, t, p)
            )
            SELECT pg_notify($6, $7)",
            events = names.events()
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(&rows.sequence_numbers)
            .bind(&rows.batch_lasts)
            .bind(&rows.occurred_at)
            .bind(&rows.event_types)
            .bind(&rows.payloads)
            .bind(names.channel())
            .bind(last.to_string())
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        Ok(())
    }
    .await;
    finish(transaction, outcome, Finish::Commit, failed).await
}

/// How [`finish`] ends a transaction that succeeded.
#[derive(Clone, Copy)]
enum Finish {
    Commit,
    RollBack,
}

/// Ends `transaction` after its work: as `on_success` says when `outcome`
/// is a success, rolled back otherwise, in both cases before the call
/// returns. A dropped sqlx transaction is rolled back only later, when its
/// connection goes back to the pool, and keeps its advisory locks (the log's
/// append lock, a durable stream's name) until then: a refused operation
/// would make the next one wait, or report the stream as running.
async fn finish<T>(
    transaction: sqlx::Transaction<'_, sqlx::Postgres>,
    outcome: Result<T, EventStoreError>,
    on_success: Finish,
    failed: impl Fn(sqlx::Error) -> EventStoreError,
) -> Result<T, EventStoreError> {
    match (outcome, on_success) {
        (Ok(value), Finish::Commit) => {
            transaction.commit().await.map_err(failed)?;
            Ok(value)
        }
        (Ok(value), Finish::RollBack) => {
            transaction.rollback().await.map_err(failed)?;
            Ok(value)
        }
        (Err(error), _) => {
            if let Err(rollback) = transaction.rollback().await {
                tracing::warn!(%rollback, "rolling back a refused store operation failed");
            }
            Err(error)
        }
    }
}

/// Refuses when durable stream `name` runs in some process: takes its lock
/// for the rest of `transaction`.
async fn refuse_active(
    transaction: &mut PgConnection,
    names: &SchemaNames,
    name: &str,
) -> Result<(), EventStoreError> {
    let free = try_lock_name(transaction, names, name)
        .await
        .map_err(|error| {
            database_failure(&format!("cannot lock durable stream `{name}`"), &error)
        })?;
    if free {
        Ok(())
    } else {
        Err(EventStoreError::backend(format!(
            "durable stream `{name}` is active in some process; stop it first"
        )))
    }
}

/// Takes the lock of durable stream `name` until the transaction ends;
/// false when a running stream holds it.
async fn try_lock_name(
    transaction: &mut PgConnection,
    names: &SchemaNames,
    name: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(names.durable_lock_key(name))
        .fetch_one(transaction)
        .await
}

/// Refuses names PostgreSQL cannot store.
fn checked_name(name: &str) -> Result<String, EventStoreError> {
    if name.contains('\0') {
        return Err(EventStoreError::invalid_input(format!(
            "durable stream name {name:?} contains a NUL character, which PostgreSQL cannot store"
        )));
    }
    Ok(name.to_owned())
}

/// Imported batches as the columns of one `UNNEST` insert, serialized on
/// the caller's thread.
struct ImportRows {
    first_sequence_number: u64,
    first_commit: DateTime<Utc>,
    sequence_numbers: Vec<i64>,
    batch_lasts: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    event_types: Vec<String>,
    payloads: Vec<String>,
}

impl ImportRows {
    fn of(
        batches: &[Vec<EventRecord>],
        first_sequence_number: u64,
        first_commit: DateTime<Utc>,
    ) -> Result<Self, EventStoreError> {
        let events = batches.iter().map(Vec::len).sum();
        let mut rows = Self {
            first_sequence_number,
            first_commit,
            sequence_numbers: Vec::with_capacity(events),
            batch_lasts: Vec::with_capacity(events),
            occurred_at: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
        };
        for batch in batches {
            let batch_last = batch.last().map_or(0, |record| record.sequence_number);
            for record in batch {
                if record.event_type.contains('\0') || contains_nul(&record.payload) {
                    return Err(EventStoreError::invalid_input(format!(
                        "event {} holds a NUL character in its type or payload, which \
                         PostgreSQL cannot store",
                        record.sequence_number
                    )));
                }
                rows.sequence_numbers
                    .push(to_stored(record.sequence_number));
                rows.batch_lasts.push(to_stored(batch_last));
                rows.occurred_at.push(record.occurred_at);
                rows.event_types.push(record.event_type.clone());
                rows.payloads.push(record.payload.to_string());
            }
        }
        Ok(rows)
    }
}
