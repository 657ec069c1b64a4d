//! The read connections: idle ones are kept for the next query or stream
//! read.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use factstr::EventStoreError;
use factstr::backend::sync::lock;
use rusqlite::Connection;

use crate::error::SqliteResultExt;
use crate::options::SqliteStoreOptions;
use crate::{schema, sql};

/// Idle read connections, reused across queries and stream reads.
pub(crate) struct ReaderPool {
    path: PathBuf,
    options: SqliteStoreOptions,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    /// No connections yet, to the database at `path`.
    pub(crate) fn new(path: &Path, options: &SqliteStoreOptions) -> Self {
        Self {
            path: path.to_path_buf(),
            options: options.clone(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` inside one read transaction, so everything it reads comes
    /// from one snapshot.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let idle = lock(&self.idle).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => schema::open_reader_connection(&self.path, &self.options)?,
        };
        connection
            .prepare_cached(sql::BEGIN_READ)
            .and_then(|mut statement| statement.execute([]))
            .or_failed("starting a read transaction")?;
        let outcome = read(&connection);
        let ended = connection
            .prepare_cached(sql::COMMIT)
            .and_then(|mut statement| statement.execute([]))
            .or_failed("ending a read transaction");
        match ended {
            Ok(_) if connection.is_autocommit() => {
                let mut idle = lock(&self.idle);
                if idle.len() < self.options.idle_readers {
                    idle.push(connection);
                }
            }
            // A connection left inside a transaction is dropped, which
            // rolls it back.
            _ => {}
        }
        let value = outcome?;
        ended?;
        Ok(value)
    }
}
