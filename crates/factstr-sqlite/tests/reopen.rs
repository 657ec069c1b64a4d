//! What only a SQLite file shows about reopening: the path a store reports,
//! and durable cursors reaching the file while their stream runs. What
//! survives closing and reopening through the `EventStore` API is tested by
//! the persistent conformance suite (`tests/conformance.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use factstr::{DurableStream, EventStore};
use factstr_conformance::support::{Deliveries, eventually, numbered};
use factstr_sqlite::SqliteStore;

/// The cursor stored in the file for `name`, read with a connection of its own.
fn stored_cursor(path: &Path, name: &str) -> Option<u64> {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .query_row(
            "SELECT cursor FROM factstr_durable_streams WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .ok()
        .map(|cursor| cursor as u64)
}

#[test]
fn a_running_durable_streams_cursor_reaches_the_file() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let store = SqliteStore::open(&path).unwrap();
    store.append(numbered("a", 2)).unwrap();
    let handled = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("projection"), handled.handler())
        .unwrap();
    store.append(numbered("a", 3)).unwrap();
    handled.wait_for_sequence(5);
    // Not only when the stream or the store closes.
    eventually("the cursor reaching the file", || {
        stored_cursor(&path, "projection") == Some(5)
    });
}

#[test]
fn database_path_is_the_path_given() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("nested/folders/events.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.database_path(), path.as_path());
    assert!(path.exists());
}
