//! The group's write transaction and the savepoint of one request, each a
//! guard that undoes its writes unless they are kept.
//!
//! rusqlite's `Transaction` and `Savepoint` do the same, but prepare their
//! statements on every call and cannot put pending cursors back; these keep
//! `BEGIN IMMEDIATE`, `SAVEPOINT`, `RELEASE` and `COMMIT` in the
//! connection's statement cache.

use std::collections::HashMap;

use factstr::EventStoreError;
use rusqlite::Connection;

use super::cursors::PendingCursorWrites;
use crate::error::SqliteResultExt;
use crate::{durable, sql};

/// A `BEGIN IMMEDIATE` transaction that first wrote the pending durable
/// cursors. Dropped without [`commit`](Self::commit) (an error returned
/// early, a panic, nothing to keep), it rolls back and puts the cursors
/// back, so the next transaction writes them.
pub(super) struct WriteTransaction<'a> {
    connection: &'a Connection,
    pending: &'a PendingCursorWrites,
    /// The cursors this transaction writes.
    cursors: HashMap<String, u64>,
    committed: bool,
}

impl<'a> WriteTransaction<'a> {
    /// Begins the transaction and writes `cursors`, taken from `pending`.
    pub(super) fn begin(
        connection: &'a Connection,
        pending: &'a PendingCursorWrites,
        cursors: HashMap<String, u64>,
    ) -> Result<Self, EventStoreError> {
        // The guard first, so that a failure below puts the cursors back.
        let transaction = Self {
            connection,
            pending,
            cursors,
            committed: false,
        };
        if !connection.is_autocommit() {
            // Left open by a rollback that failed before: end it, or BEGIN
            // fails.
            roll_back(connection);
        }
        connection
            .prepare_cached(sql::BEGIN_WRITE)
            .and_then(|mut statement| statement.execute([]))
            .or_failed_on(connection, "starting a write transaction")?;
        if transaction.writes_cursors() {
            durable::write_cursors(connection, &transaction.cursors)
                .or_failed_on(connection, "writing durable cursors")?;
        }
        Ok(transaction)
    }

    /// Whether the transaction writes durable cursors.
    pub(super) fn writes_cursors(&self) -> bool {
        !self.cursors.is_empty()
    }

    /// Whether SQLite rolled the whole transaction back after an error (a
    /// full disk, an I/O error): nothing written in it is kept.
    pub(super) fn was_rolled_back(&self) -> bool {
        self.connection.is_autocommit()
    }

    /// A savepoint for one request.
    pub(super) fn savepoint(&self) -> Result<RequestSavepoint<'a>, EventStoreError> {
        self.connection
            .prepare_cached(sql::SAVEPOINT)
            .and_then(|mut statement| statement.execute([]))
            .or_failed_on(self.connection, "starting a savepoint")?;
        Ok(RequestSavepoint {
            connection: self.connection,
            kept: false,
        })
    }

    /// Commits (`what` names the work for the error); on failure the guard
    /// rolls back and puts the cursors back.
    pub(super) fn commit(mut self, what: &str) -> Result<(), EventStoreError> {
        self.connection
            .prepare_cached(sql::COMMIT)
            .and_then(|mut statement| statement.execute([]))
            .or_failed_on(self.connection, what)?;
        self.committed = true;
        Ok(())
    }

    /// Ends the transaction without keeping anything.
    pub(super) fn roll_back(self) {}
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if !self.connection.is_autocommit() {
            roll_back(self.connection);
        }
        self.pending.restore(std::mem::take(&mut self.cursors));
    }
}

fn roll_back(connection: &Connection) {
    if let Err(error) = connection.execute_batch(sql::ROLLBACK) {
        tracing::error!(%error, "rolling back a failed write transaction failed");
    }
}

/// The savepoint of one request. Dropped without [`keep`](Self::keep), it
/// undoes the request's writes and nothing else.
pub(super) struct RequestSavepoint<'a> {
    connection: &'a Connection,
    kept: bool,
}

impl RequestSavepoint<'_> {
    /// Keeps the request's writes in the transaction.
    pub(super) fn keep(mut self) {
        self.kept = true;
        // After SQLite rolled the whole transaction back, no savepoint is
        // left to release.
        if self.connection.is_autocommit() {
            return;
        }
        let released = self
            .connection
            .prepare_cached(sql::RELEASE_SAVEPOINT)
            .and_then(|mut statement| statement.execute([]));
        if let Err(error) = released {
            tracing::error!(%error, "ending a savepoint failed");
        }
    }
}

impl Drop for RequestSavepoint<'_> {
    fn drop(&mut self) {
        if !self.kept
            && !self.connection.is_autocommit()
            && let Err(error) = self.connection.execute_batch(sql::ROLLBACK_TO_SAVEPOINT)
        {
            tracing::error!(%error, "ending a savepoint failed");
        }
    }
}
