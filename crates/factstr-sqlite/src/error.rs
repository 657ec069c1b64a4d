//! Mapping SQLite and I/O errors to `EventStoreError` at the store boundary.

use factstr::EventStoreError;
use rusqlite::ErrorCode;

/// Turns `error`, raised while doing `what`, into a `BackendFailure` whose
/// message says what failed and why.
pub(crate) fn sqlite_failure(what: &str, error: &rusqlite::Error) -> EventStoreError {
    let hint = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another connection held the lock longer than the busy timeout)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::ReadOnly) => " (the database file is read-only)",
        _ => "",
    };
    EventStoreError::backend(format!("{what} failed: {error}{hint}"))
}

/// `result` with its SQLite error mapped by [`sqlite_failure`].
pub(crate) trait SqliteResultExt<T> {
    /// Maps an error to a `BackendFailure` naming `what` failed.
    fn or_failed(self, what: &str) -> Result<T, EventStoreError>;
}

impl<T> SqliteResultExt<T> for Result<T, rusqlite::Error> {
    fn or_failed(self, what: &str) -> Result<T, EventStoreError> {
        self.map_err(|error| sqlite_failure(what, &error))
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
