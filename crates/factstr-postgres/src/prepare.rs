//! Preparing the schema when a store connects: checking the database,
//! creating the store's tables when missing, and bringing a factstr 0.5.x
//! log over (see [`legacy`]) in the same transaction.

use factstr::EventStoreError;
use sqlx::PgConnection;

use crate::error::database_failure;
use crate::legacy;
use crate::schema::{self, SCHEMA_VERSION, SchemaNames};

/// Finds the schema the connection's `search_path` names, checks the
/// database, and creates the tables when missing. A factstr 0.5.x log in
/// the schema is brought over (see [`legacy`]) in the same transaction.
/// Safe when several processes do it at once: creation runs under a
/// transaction-scoped advisory lock.
pub(crate) async fn prepare(connection: &mut PgConnection) -> Result<SchemaNames, EventStoreError> {
    let (schema, encoding): (Option<String>, String) =
        sqlx::query_as("SELECT current_schema(), current_setting('server_encoding')")
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| database_failure("cannot read the current schema", &error))?;
    if encoding != "UTF8" {
        return Err(EventStoreError::backend(format!(
            "the database encoding is {encoding}; the PostgreSQL store needs a UTF8 database"
        )));
    }
    let Some(schema) = schema else {
        return Err(EventStoreError::backend(
            "the connection's search_path names no existing schema; create the schema first \
             or set search_path (for example with `options=-csearch_path%3Dmy_schema` in the URL)",
        ));
    };
    let names = SchemaNames::new(&schema);
    let has_legacy_log = legacy::find(connection, &names).await?.is_some();
    if has_legacy_log || schema::stored_version(connection, &names).await? != Some(SCHEMA_VERSION) {
        create_tables(connection, &names).await?;
    }
    Ok(names)
}

async fn create_tables(
    connection: &mut PgConnection,
    names: &SchemaNames,
) -> Result<(), EventStoreError> {
    let failed = |error: sqlx::Error| {
        database_failure(
            &format!(
                "cannot create the store's tables in schema {}",
                names.schema()
            ),
            &error,
        )
    };
    let mut transaction = sqlx::Connection::begin(&mut *connection)
        .await
        .map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(names.creation_lock_key())
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
    for statement in schema::table_statements(names) {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
    }
    let version = schema::read_version(&mut transaction, names).await?;
    if version != Some(SCHEMA_VERSION) {
        return Err(EventStoreError::backend(format!(
            "schema {} holds version {version:?} of the store's tables; expected {SCHEMA_VERSION}",
            names.schema()
        )));
    }
    // Looked for again under the lock: another process may have migrated
    // the 0.5.x log meanwhile.
    let migrated = match legacy::find(&mut transaction, names).await? {
        Some(tables) => legacy::reconcile(&mut transaction, names, &tables).await?,
        None => None,
    };
    // After the migration: building the indexes over the copied events
    // once is about four times faster than updating them row by row.
    for statement in schema::index_statements(names) {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)?;
    if let Some(migrated) = migrated {
        tracing::info!(
            schema = %names.schema(),
            events = migrated.events,
            durable_streams = migrated.durable_streams,
            "brought the factstr 0.5.x log over"
        );
    }
    Ok(())
}
