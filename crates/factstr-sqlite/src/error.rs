//! Mapping SQLite and I/O errors to `EventStoreError` at the store boundary.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use factstr::EventStoreError;
use rusqlite::{Connection, ErrorCode};

/// Turns `error`, raised while doing `what`, into a `BackendFailure` whose
/// message says what failed and why.
pub(crate) fn sqlite_failure(what: &str, error: &rusqlite::Error) -> EventStoreError {
    let hint = code_hint(error).unwrap_or_default();
    EventStoreError::backend(format!("{what} failed: {error}{hint}"))
}

/// Like [`sqlite_failure`] for an error of the writer connection
/// `connection`, explained by [`hint_for_file`].
pub(crate) fn sqlite_failure_on(
    connection: &Connection,
    what: &str,
    error: &rusqlite::Error,
) -> EventStoreError {
    let path = connection
        .path()
        .filter(|path| !path.is_empty())
        .map(Path::new);
    let hint = match path.and_then(|path| file_problem(path, error)) {
        // Linux turns a file system read-only under open files only after
        // an error, and it cannot be made writable again before every file
        // on it is closed.
        Some(FileProblem::ReadOnlyFileSystem) => {
            " (the file system holding the database is read-only; \
             once it is writable again, close the store and open it again)"
        }
        Some(FileProblem::NotWritable) => NOT_WRITABLE,
        None => code_hint(error).unwrap_or_default(),
    };
    EventStoreError::backend(format!("{what} failed: {error}{hint}"))
}

/// What explains `error`, raised while opening the database file at `path`.
pub(crate) fn hint_for_file(path: &Path, error: &rusqlite::Error) -> &'static str {
    match file_problem(path, error) {
        Some(problem) => problem.hint(),
        None => code_hint(error).unwrap_or_default(),
    }
}

/// Why the database file cannot be written.
#[derive(Clone, Copy)]
pub(crate) enum FileProblem {
    ReadOnlyFileSystem,
    NotWritable,
}

const NOT_WRITABLE: &str = " (the database file is not writable: its permissions allow no writes)";

impl FileProblem {
    /// The explanation appended to an error message.
    pub(crate) fn hint(self) -> &'static str {
        match self {
            FileProblem::ReadOnlyFileSystem => {
                " (the file system holding the database is read-only)"
            }
            FileProblem::NotWritable => NOT_WRITABLE,
        }
    }

    /// Why the file at `path` cannot be written, if a look at it shows: its
    /// file system is read-only, or nobody may write it.
    ///
    /// The look never opens the file: closing any descriptor of a database
    /// file releases every POSIX lock this process holds on it, including
    /// those of SQLite's connections. Setting the file's permissions to what
    /// they are changes nothing but fails on a read-only file system.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let permissions = fs::metadata(path).ok()?.permissions();
        match fs::set_permissions(path, permissions.clone()) {
            Err(error) if error.kind() == ErrorKind::ReadOnlyFilesystem => {
                Some(FileProblem::ReadOnlyFileSystem)
            }
            _ => permissions.readonly().then_some(FileProblem::NotWritable),
        }
    }
}

/// The file's problem behind an I/O, open or read-only error: SQLite
/// reports a write to a read-only file system as a plain "disk I/O error".
fn file_problem(path: &Path, error: &rusqlite::Error) -> Option<FileProblem> {
    match error.sqlite_error_code() {
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::ReadOnly) => {
            FileProblem::of(path)
        }
        _ => None,
    }
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
        ErrorCode::DiskFull => " (the disk is full; writes work again once space is freed)",
        ErrorCode::ReadOnly => " (the database file is read-only)",
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => CORRUPT,
        ErrorCode::SystemIoFailure => {
            " (the operating system reported an I/O error: the disk may be failing)"
        }
        _ => return None,
    })
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
