//! The store's shared state and its [`CommittedLog`] side: read
//! connections, committed batch pages and durable streams.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use factstr::backend::{BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState};
use factstr::{EventQuery, EventStoreError};
use rusqlite::{Connection, OptionalExtension};

use crate::error::SqliteResultExt;
use crate::options::SqliteStoreOptions;
use crate::writer::Writer;
use crate::{schema, sql};

/// What the store and the stream dispatcher share: the writer, the read
/// connections and the durable stream claims of one database file.
pub(crate) struct SqliteLog {
    pub(crate) writer: Writer,
    readers: ReaderPool,
    claims: DurableStreamClaims,
}

impl SqliteLog {
    pub(crate) fn new(path: &Path, options: &SqliteStoreOptions, writer: Writer) -> Self {
        Self {
            writer,
            readers: ReaderPool {
                path: path.to_path_buf(),
                options: options.clone(),
                idle: Mutex::new(Vec::new()),
            },
            claims: DurableStreamClaims {
                directory: claims_directory(path),
                database: path.to_path_buf(),
                held: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Runs `read` inside one read transaction, so everything it reads comes
    /// from one snapshot.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        self.readers.read(read)
    }

    /// The stored query and cursor of `name`, creating it when new.
    fn stored_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        // Pending first: the writer may commit it before the read below, but
        // never lose it in between.
        let pending = self.writer.pending_cursor(name);
        let stored = self.read(|connection| {
            connection
                .prepare_cached("SELECT query, cursor FROM factstr_durable_streams WHERE name = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_row([name], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })
                        .optional()
                })
                .or_failed("reading a durable stream")
        })?;
        let (query_json, cursor) = match stored {
            Some((query_json, cursor)) => (query_json, sql::to_sequence_number(cursor)?),
            None => {
                let query_json = serde_json::to_string(query).map_err(|error| {
                    EventStoreError::invalid_input(format!(
                        "the query of durable stream `{name}` cannot be stored as JSON: {error}"
                    ))
                })?;
                self.writer.open_durable_stream(name, query_json)?
            }
        };
        let query = serde_json::from_str(&query_json).map_err(|error| {
            EventStoreError::backend(format!(
                "the stored query of durable stream `{name}` cannot be read: {error}"
            ))
        })?;
        Ok(DurableStreamState {
            query,
            cursor: cursor.max(pending.unwrap_or(0)),
        })
    }
}

impl CommittedLog for SqliteLog {
    fn committed_head(&self) -> Result<u64, EventStoreError> {
        self.read(|connection| Ok(sql::last_committed(connection)?.0))
    }

    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        self.read(|connection| sql::read_committed_batches(connection, request))
    }

    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        self.claims.claim(name)?;
        let stored = self.stored_durable_stream(name, query);
        if stored.is_err() {
            self.claims.release(name);
        }
        stored
    }

    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError> {
        self.writer.advance_durable_cursor(name, cursor)
    }

    fn close_durable_stream(&self, name: &str) {
        // Write the cursor before another process can claim the name.
        if let Err(error) = self.writer.flush_durable_cursors() {
            tracing::warn!(durable_stream = name, %error, "could not write the durable cursor on close");
        }
        self.claims.release(name);
    }
}

/// Idle read connections, reused across queries and stream reads.
struct ReaderPool {
    path: PathBuf,
    options: SqliteStoreOptions,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let idle = self.idle().pop();
        let connection = match idle {
            Some(connection) => connection,
            None => schema::open_reader_connection(&self.path, &self.options)?,
        };
        connection
            .prepare_cached("BEGIN")
            .and_then(|mut statement| statement.execute([]))
            .or_failed("starting a read transaction")?;
        let outcome = read(&connection);
        let ended = connection
            .prepare_cached("COMMIT")
            .and_then(|mut statement| statement.execute([]))
            .or_failed("ending a read transaction");
        match ended {
            Ok(_) if connection.is_autocommit() => {
                let mut idle = self.idle();
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

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Cross-process claims on durable stream names: an exclusive lock on one
/// small file per name, next to the database. The operating system releases
/// it when the process ends, also when it is killed.
struct DurableStreamClaims {
    directory: PathBuf,
    database: PathBuf,
    held: Mutex<HashMap<String, File>>,
}

impl DurableStreamClaims {
    fn claim(&self, name: &str) -> Result<(), EventStoreError> {
        let failed = |error: std::io::Error| {
            EventStoreError::backend(format!(
                "cannot claim durable stream `{name}` in {}: {error}",
                self.directory.display()
            ))
        };
        std::fs::create_dir_all(&self.directory).map_err(failed)?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.directory.join(lock_file_name(name)))
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(EventStoreError::backend(format!(
                    "durable stream `{name}` is already active in another process \
                     (or another store) using {}",
                    self.database.display()
                )));
            }
            Err(TryLockError::Error(error)) if error.kind() == ErrorKind::Unsupported => {
                tracing::warn!(
                    durable_stream = name,
                    "file locks are not supported here; the durable stream is not \
                     protected against a second process running it"
                );
            }
            Err(TryLockError::Error(error)) => return Err(failed(error)),
        }
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), file);
        Ok(())
    }

    fn release(&self, name: &str) {
        // Closing the file releases the lock.
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

/// `<database file name>-durable-streams`, next to the database.
fn claims_directory(database: &Path) -> PathBuf {
    let mut name = database
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push("-durable-streams");
    database.with_file_name(name)
}

/// A file name for the claim on `name` that is valid on every file system:
/// the name's bytes in hex, or for long names a hash of them.
fn lock_file_name(name: &str) -> String {
    const MAX_HEX_BYTES: usize = 100;
    if name.len() <= MAX_HEX_BYTES {
        let hex: String = name.bytes().map(|byte| format!("{byte:02x}")).collect();
        return format!("{hex}.lock");
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("long-{hash:016x}-{}.lock", name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_names_are_distinct_and_short() {
        assert_eq!(lock_file_name("ab"), "6162.lock");
        assert_ne!(lock_file_name("a/b"), lock_file_name("a_b"));
        let long = "x".repeat(500);
        let name = lock_file_name(&long);
        assert!(name.len() < 64, "{name}");
        assert_ne!(name, lock_file_name(&"x".repeat(501)));
    }

    /// Claim file names are shared by processes of different builds on one
    /// database, so they never change: these are the names every release
    /// has used.
    #[test]
    fn lock_file_names_stay_the_same_across_builds() {
        assert_eq!(lock_file_name("ledger/é"), "6c65646765722fc3a9.lock");
        assert_eq!(
            lock_file_name(&"x".repeat(100)),
            format!("{}.lock", "78".repeat(100))
        );
        assert_eq!(
            lock_file_name(&"x".repeat(500)),
            "long-b6822c71b0501b75-500.lock"
        );
        assert_eq!(
            lock_file_name(&format!("projection/{}", "é".repeat(60))),
            "long-b7fc0eb2a526be2d-131.lock"
        );
    }

    #[test]
    fn claims_live_next_to_the_database() {
        assert_eq!(
            claims_directory(Path::new("/data/events.db")),
            PathBuf::from("/data/events.db-durable-streams")
        );
    }
}
