//! Opening files: new, empty and missing files are initialised; files that
//! are not FACTSTR databases of a known version are refused and left
//! unchanged; many openers of one new file all succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use factstr::{EventQuery, EventStore, EventStoreError};
use factstr_conformance::support::numbered;
use factstr_sqlite::SqliteStore;

/// The files in `folder`, sorted.
fn files_in(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn invalid_input_message(result: Result<SqliteStore, EventStoreError>) -> String {
    match result {
        Err(EventStoreError::InvalidInput { message }) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_sqlite_database_is_refused_and_left_unchanged() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let content = b"name,amount\nalice,5\n".repeat(500);
    std::fs::write(&path, &content).unwrap();

    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
    assert_eq!(common::file_bytes(&path), content);
    assert_eq!(files_in(folder.path()), vec![path]);
}

#[test]
fn a_sqlite_database_of_another_application_is_refused_and_left_unchanged() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER);
                 INSERT INTO accounts VALUES ('a1', 5), ('a2', 7);",
            )
            .unwrap();
    }
    let before = common::file_bytes(&path);

    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a FACTSTR database"), "{message}");
    assert!(message.contains("accounts"), "{message}");
    assert_eq!(common::file_bytes(&path), before);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the journal mode was changed");
}

/// Opening a store written by this build after changing its schema version
/// to `version` fails; returns the message, and checks the file stayed as
/// it was.
fn refused_schema_version(version: &str) -> String {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("a", 3)).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute(
                "UPDATE factstr_metadata SET value = ?1 WHERE key = 'schema_version'",
                [version],
            )
            .unwrap();
    }
    let before = common::file_bytes(&path);

    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("schema version {version}")),
        "{message}"
    );
    assert_eq!(common::file_bytes(&path), before);
    message
}

#[test]
fn a_database_of_a_newer_schema_version_is_refused_and_left_unchanged() {
    let message = refused_schema_version("4");
    assert!(message.contains("use a newer factstr-sqlite"), "{message}");
}

#[test]
fn a_database_of_the_unreleased_first_schema_version_is_refused_and_left_unchanged() {
    let message = refused_schema_version("1");
    assert!(!message.contains("use a newer"), "{message}");
}

/// A file of schema version 2 (written by factstr-sqlite before the
/// payload index was written behind the log) has every event in the payload
/// index and no mark saying so; opening it records the mark and version 3,
/// and its events are found by payload as before.
#[test]
fn a_database_of_schema_version_2_is_upgraded_on_open() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let account = |n: u64| serde_json::json!({ "account": format!("a{}", n % 5), "n": n });
    {
        let store = SqliteStore::open(&path).unwrap();
        // One batch larger than the unindexed tail may be: all indexed, as
        // version 2 wrote every event.
        let batch = (1..=40)
            .map(|n| factstr::NewEvent::new("deposited", account(n)))
            .collect();
        store.append(batch).unwrap();
    }
    let metadata = |connection: &rusqlite::Connection, key: &str| {
        connection
            .query_row(
                "SELECT value FROM factstr_metadata WHERE key = ?1",
                [key],
                |row| row.get::<_, String>(0),
            )
            .ok()
    };
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(
            metadata(&connection, "payload_indexed_through").as_deref(),
            Some("40")
        );
        connection
            .execute_batch(
                "DELETE FROM factstr_metadata WHERE key = 'payload_indexed_through';
                 UPDATE factstr_metadata SET value = '2' WHERE key = 'schema_version';",
            )
            .unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(
            metadata(&connection, "schema_version").as_deref(),
            Some("3")
        );
        assert_eq!(
            metadata(&connection, "payload_indexed_through").as_deref(),
            Some("40")
        );
    }
    store
        .append(vec![factstr::NewEvent::new("deposited", account(41))])
        .unwrap();
    let query = EventQuery::all().with_filters([factstr::EventFilter::default()
        .with_payload_predicates([serde_json::json!({ "account": "a1" })])]);
    let found: Vec<u64> = store
        .query(&query)
        .unwrap()
        .event_records
        .iter()
        .map(|record| record.sequence_number)
        .collect();
    assert_eq!(found, vec![1, 6, 11, 16, 21, 26, 31, 36, 41]);
}

#[test]
fn a_damaged_database_is_an_error_not_a_panic() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let mut content = b"SQLite format 3\0".to_vec();
    content.extend(std::iter::repeat_n(0xA5_u8, 8_192));
    std::fs::write(&path, &content).unwrap();
    assert!(SqliteStore::open(&path).is_err());
}

#[test]
fn an_empty_file_is_initialised() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    std::fs::File::create(&path).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.append(numbered("a", 2)).unwrap();
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        2
    );
}

#[test]
fn paths_sqlite_would_not_keep_in_a_file_are_invalid_input() {
    for path in ["", ":memory:"] {
        let message = invalid_input_message(SqliteStore::open(path));
        assert!(message.contains("path"), "{message}");
    }
}

#[test]
fn threads_opening_one_new_file_at_once_all_succeed() {
    const OPENERS: usize = 8;
    let folder = tempfile::tempdir().unwrap();
    let path = Arc::new(folder.path().join("new/events.db"));
    let barrier = Arc::new(Barrier::new(OPENERS));
    let openers: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let store = SqliteStore::open(path.as_path()).unwrap();
                store.append(numbered("opened", 1)).unwrap();
                store
            })
        })
        .collect();
    let stores: Vec<SqliteStore> = openers
        .into_iter()
        .map(|opener| opener.join().unwrap())
        .collect();
    let records = stores[0].query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(
        factstr_conformance::support::sequence_numbers(&records),
        (1..=OPENERS as u64).collect::<Vec<_>>()
    );
}
