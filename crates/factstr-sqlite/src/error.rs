//! Mapping SQLite and I/O errors to `EventStoreError` at the store boundary.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

use factstr::EventStoreError;
use rusqlite::{Connection, ErrorCode, ffi};

/// Turns `error`, raised while doing `what`, into a `BackendFailure` whose
/// message says what failed and why.
pub(crate) fn sqlite_failure(what: &str, error: &rusqlite::Error) -> EventStoreError {
    let hint = code_hint(error).unwrap_or_default();
    EventStoreError::backend(format!("{what} failed: {error}{hint}"))
}

/// Like [`sqlite_failure`] for an error on `connection`, explained by
/// [`hint_for_file`].
pub(crate) fn sqlite_failure_on(
    connection: &Connection,
    what: &str,
    error: &rusqlite::Error,
) -> EventStoreError {
    let hint = match connection.path().filter(|path| !path.is_empty()) {
        Some(path) => hint_for_file(Path::new(path), error),
        None => code_hint(error).unwrap_or_default(),
    };
    EventStoreError::backend(format!("{what} failed: {error}{hint}"))
}

/// What explains `error`, raised on the database file at `path`. An I/O
/// error is explained by a look at the file: SQLite reports a write to a
/// read-only file system as a plain "disk I/O error".
pub(crate) fn hint_for_file(path: &Path, error: &rusqlite::Error) -> &'static str {
    let file_hint = match error.sqlite_error_code() {
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::ReadOnly) => {
            file_system_hint(path)
        }
        _ => None,
    };
    file_hint.or_else(|| code_hint(error)).unwrap_or_default()
}

const CORRUPT: &str = " (the database file is corrupt; restore it from a backup)";

/// What SQLite's error code tells a user about the cause.
fn code_hint(error: &rusqlite::Error) -> Option<&'static str> {
    let failure = match error {
        rusqlite::Error::SqliteFailure(failure, _) => failure,
        // The store writes every column with one type and valid text, so a
        // stored value that does not convert was damaged.
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => return Some(CORRUPT),
        _ => return None,
    };
    Some(match failure.code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            " (another connection held the lock longer than the busy timeout)"
        }
        ErrorCode::DiskFull => " (the disk is full; appends work again once space is freed)",
        ErrorCode::ReadOnly if failure.extended_code == ffi::SQLITE_READONLY_DBMOVED => {
            " (the database file was moved or deleted while the store had it open; \
             close the store and open it again)"
        }
        ErrorCode::ReadOnly => " (the database file is read-only)",
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => CORRUPT,
        ErrorCode::SystemIoFailure => {
            " (the operating system reported an I/O error: the disk may be failing)"
        }
        _ => return None,
    })
}

/// Why the database file at `path` cannot be written, if a look at it
/// shows: its file system is read-only, or this process may not write it.
/// Opening for appending changes nothing in the file.
pub(crate) fn file_system_hint(path: &Path) -> Option<&'static str> {
    match OpenOptions::new().append(true).open(path) {
        Err(error) if error.kind() == ErrorKind::ReadOnlyFilesystem => Some(
            " (the file system holding the database is read-only; \
             make it writable, then close the store and open it again)",
        ),
        Err(error) if error.kind() == ErrorKind::PermissionDenied => {
            Some(" (this process may not write the database file)")
        }
        _ => None,
    }
}

/// `result` with its SQLite error mapped by [`sqlite_failure`].
pub(crate) trait SqliteResultExt<T> {
    /// Maps an error to a `BackendFailure` naming `what` failed.
    fn or_failed(self, what: &str) -> Result<T, EventStoreError>;

    /// Maps an error on `connection` to a `BackendFailure` naming `what`
    /// failed (see [`sqlite_failure_on`]).
    fn or_failed_on(self, connection: &Connection, what: &str) -> Result<T, EventStoreError>;
}

impl<T> SqliteResultExt<T> for Result<T, rusqlite::Error> {
    fn or_failed(self, what: &str) -> Result<T, EventStoreError> {
        self.map_err(|error| sqlite_failure(what, &error))
    }

    fn or_failed_on(self, connection: &Connection, what: &str) -> Result<T, EventStoreError> {
        self.map_err(|error| sqlite_failure_on(connection, what, &error))
    }
}

/// The error every caller gets once the writer has stopped.
pub(crate) fn writer_stopped() -> EventStoreError {
    EventStoreError::backend("the store is closed: its SQLite writer has stopped")
}

/// A stored integer that cannot be a sequence number or cursor.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::backend(format!(
        "the database holds an invalid {what}: {value}; the file may be corrupt"
    ))
}
