//! Opening the persistent stores.

use std::sync::Arc;

use factstr::EventStoreError;
use factstr_postgres::{PostgresBootstrapOptions, PostgresStore};
use factstr_sqlite::SqliteStore;

use crate::SharedStore;

pub(crate) fn open_sqlite(path: &str) -> Result<SharedStore, EventStoreError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

pub(crate) fn connect_postgres(url: &str) -> Result<SharedStore, EventStoreError> {
    Ok(Arc::new(PostgresStore::connect(url)?))
}

pub(crate) fn bootstrap_postgres(
    server_url: String,
    database_name: String,
) -> Result<SharedStore, EventStoreError> {
    Ok(Arc::new(PostgresStore::bootstrap(
        PostgresBootstrapOptions {
            server_url,
            database_name,
        },
    )?))
}
