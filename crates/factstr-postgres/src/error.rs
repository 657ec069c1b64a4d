//! How backend errors become `EventStoreError`s.

use factstr::EventStoreError;

/// A `BackendFailure` saying `what` failed and why.
pub(crate) fn database_failure(what: &str, error: &sqlx::Error) -> EventStoreError {
    EventStoreError::backend(format!("{what}: {error}"))
}

/// Whether `error` means the connection is gone (the server restarted or the
/// network failed), so that the connection must be replaced and work that
/// did not commit may be tried again on a new one.
pub(crate) fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // Class 08: connection exception; 57P: operator intervention
            // (admin shutdown, crash shutdown, cannot connect now).
            code.starts_with("08") || code.starts_with("57P")
        }),
        _ => false,
    }
}
