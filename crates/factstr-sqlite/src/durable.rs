//! Durable streams: the claim that makes a name exclusive across
//! processes, and the stored query and cursor.
//!
//! A claim is an exclusive lock on one small file per name, next to the
//! database; the operating system releases it when the process ends, also
//! when it is killed. The stored query is the normalized query as JSON
//! (`factstr::backend::encode_durable_query`), and a cursor only moves
//! forward.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use factstr::EventStoreError;
use factstr::backend::fnv1a_64;
use factstr::backend::sequence::to_stored;
use factstr::backend::sync::lock;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sql;

/// The stored query (JSON) and cursor of durable stream `name`, if it
/// exists.
pub(crate) fn stored(
    connection: &Connection,
    name: &str,
) -> rusqlite::Result<Option<(String, i64)>> {
    connection
        .prepare_cached(sql::SELECT_DURABLE_STREAM)?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
}

/// Creates durable stream `name` with `query_json` and cursor 0 unless it
/// exists; returns its stored query and cursor.
pub(crate) fn create(
    connection: &Connection,
    name: &str,
    query_json: &str,
) -> rusqlite::Result<(String, i64)> {
    connection
        .prepare_cached(sql::INSERT_DURABLE_STREAM)?
        .execute(params![name, query_json])?;
    stored(connection, name)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Writes `cursors`, each only if it is ahead of the stored one.
pub(crate) fn write_cursors(
    connection: &Connection,
    cursors: &HashMap<String, u64>,
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(sql::ADVANCE_CURSOR)?;
    for (name, cursor) in cursors {
        statement.execute(params![name, to_stored(*cursor)])?;
    }
    Ok(())
}

/// The claims this store holds on durable stream names.
pub(crate) struct DurableStreamClaims {
    directory: PathBuf,
    database: PathBuf,
    held: Mutex<HashMap<String, File>>,
}

impl DurableStreamClaims {
    /// No claims, on the durable streams of the database at `database`.
    pub(crate) fn new(database: &Path) -> Self {
        Self {
            directory: claims_directory(database),
            database: database.to_path_buf(),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Claims `name`; fails when another process or store holds it.
    pub(crate) fn claim(&self, name: &str) -> Result<(), EventStoreError> {
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
        lock(&self.held).insert(name.to_owned(), file);
        Ok(())
    }

    /// Releases the claim on `name`, if held.
    pub(crate) fn release(&self, name: &str) {
        // Closing the file releases the lock.
        lock(&self.held).remove(name);
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
    let hash = fnv1a_64(name.as_bytes());
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
