//! What the unit tests of several modules share.

#![allow(clippy::unwrap_used)]

use factstr::{EventStore, NewEvent};
use rusqlite::Connection;

use crate::{SqliteStore, SqliteStoreOptions, schema};

/// A read connection on a new database holding `events` (one batch).
pub(crate) fn reader_on(events: Vec<NewEvent>) -> (tempfile::TempDir, Connection) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("events.db");
    SqliteStore::open(&path).unwrap().append(events).unwrap();
    let connection = schema::open_reader_connection(&path, &SqliteStoreOptions::default()).unwrap();
    (folder, connection)
}
