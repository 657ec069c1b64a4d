//! Files written by the published factstr-sqlite 0.5.x open with every
//! event, batch boundary and durable cursor; the 0.5.x tables stay as they
//! were; a 0.5.x log that grew after the migration is refused with the
//! remedy; many openers migrate once. The fixtures come from the real
//! 0.5.2 and 0.5.0 crates (see `fixtures/factstr-0.5.2/README.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use factstr::{EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_conformance::fixtures_0_5::{self, LegacyFixture};
use factstr_sqlite::{SqliteStore, SqliteStoreOptions};
use rusqlite::Connection;
use serde_json::json;
use tempfile::TempDir;

const OLD_TABLES: [&str; 4] = [
    "append_batches",
    "events",
    "store_metadata",
    "subscriber_cursors",
];

fn fixture_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
}

fn expected(version: &str) -> LegacyFixture {
    LegacyFixture::read(&fixture_path(&format!("factstr-{version}.expected.json")))
}

/// A copy of the fixture file of `version` in a new temporary folder.
fn copy_of(version: &str) -> (TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("events.sqlite");
    std::fs::copy(fixture_path(&format!("factstr-{version}.sqlite")), &path).unwrap();
    (folder, path)
}

/// Every row of the 0.5.x tables and their definitions, as text.
fn old_tables(path: &Path) -> Vec<String> {
    let connection = Connection::open(path).unwrap();
    let mut rows = Vec::new();
    for table in OLD_TABLES {
        let definitions: Vec<String> = connection
            .prepare("SELECT sql FROM sqlite_schema WHERE tbl_name = ?1 ORDER BY name")
            .unwrap()
            .query_map([table], |row| row.get::<_, Option<String>>(0))
            .unwrap()
            .map(|sql| format!("{table}: {:?}", sql.unwrap()))
            .collect();
        rows.extend(definitions);
        let mut statement = connection
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let columns = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|column| format!("{:?}", row.get_ref(column).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

fn execute(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

fn count(path: &Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

fn invalid_input_message(result: Result<SqliteStore, EventStoreError>) -> String {
    match result {
        Err(EventStoreError::InvalidInput { message }) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn every_event_of_a_0_5_2_file_is_kept_with_its_time_type_and_payload() {
    let (_folder, path) = copy_of("0.5.2");
    let store = SqliteStore::open(&path).unwrap();
    let fixture = expected("0.5.2");
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_queries_find_the_matching_events(&store, &fixture);
}

#[test]
fn replay_after_migration_delivers_the_batches_0_5_2_committed() {
    let (_folder, path) = copy_of("0.5.2");
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_replay_delivers(&store, &expected("0.5.2").batches);
}

#[test]
fn durable_streams_of_0_5_2_resume_after_their_stored_cursor() {
    let (_folder, path) = copy_of("0.5.2");
    let fixture = expected("0.5.2");
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_durable_streams_resume(&store, &fixture);
}

#[test]
fn durable_cursors_and_queries_are_stored_as_factstr_stores_them() {
    let (_folder, path) = copy_of("0.5.2");
    let fixture = expected("0.5.2");
    drop(SqliteStore::open(&path).unwrap());
    let connection = Connection::open(&path).unwrap();
    let mut statement = connection
        .prepare("SELECT name, query, cursor FROM factstr_durable_streams ORDER BY name")
        .unwrap();
    let stored: Vec<(String, String, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut expected: Vec<(String, String, i64)> = fixture
        .durable_streams
        .iter()
        .map(|stream| {
            let query = factstr::backend::normalized_stream_query(&stream.query);
            (
                stream.name.clone(),
                serde_json::to_string(&query).unwrap(),
                i64::try_from(stream.cursor).unwrap(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn appends_after_the_migration_continue_and_survive_reopening() {
    let (_folder, path) = copy_of("0.5.2");
    let fixture = expected("0.5.2");
    {
        let store = SqliteStore::open(&path).unwrap();
        fixtures_0_5::assert_appends_continue(&store, &fixture);
    }
    let reopened = SqliteStore::open(&path).unwrap();
    let all = reopened.query(&EventQuery::all()).unwrap();
    assert_eq!(
        all.last_returned_sequence_number,
        Some(fixture.last_sequence_number() + 2)
    );
    assert_eq!(
        all.event_records[..fixture.events.len()],
        fixture.events[..]
    );
}

#[test]
fn the_0_5_x_tables_are_left_unchanged() {
    let (_folder, path) = copy_of("0.5.2");
    let before = old_tables(&path);
    assert!(before.len() > 30, "{before:?}");
    {
        let store = SqliteStore::open(&path).unwrap();
        fixtures_0_5::assert_durable_streams_resume(&store, &expected("0.5.2"));
        store
            .append(vec![NewEvent::new("after", json!({}))])
            .unwrap();
    }
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!(old_tables(&path), before);
}

#[test]
fn a_0_5_0_file_without_the_boundary_marker_keeps_every_batch() {
    // 0.5.0 wrote a batch row for every batch and no marker.
    let (_folder, path) = copy_of("0.5.0");
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM store_metadata WHERE key = 'append_batch_boundary_format'"
        ),
        0
    );
    let fixture = expected("0.5.0");
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_replay_delivers(&store, &fixture.batches);
    fixtures_0_5::assert_durable_streams_resume(&store, &fixture);
}

#[test]
fn without_the_marker_the_batch_rows_still_give_the_batches() {
    // A 0.5.2 log without the marker (as 0.5.2 leaves an older file it
    // appended to): rows of batches of two or more, none for single events.
    let (_folder, path) = copy_of("0.5.2");
    execute(
        &path,
        "DELETE FROM store_metadata WHERE key = 'append_batch_boundary_format'",
    );
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_replay_delivers(&store, &expected("0.5.2").batches);
}

#[test]
fn without_the_marker_events_no_batch_row_covers_are_delivered_one_by_one() {
    let (_folder, path) = copy_of("0.5.2");
    execute(
        &path,
        "DELETE FROM store_metadata WHERE key = 'append_batch_boundary_format';
         DELETE FROM append_batches WHERE first_sequence_number IN (2, 14);",
    );
    let fixture = expected("0.5.2");
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    let batches: Vec<Vec<u64>> = fixture
        .batches
        .iter()
        .flat_map(|batch| {
            if batch[0] == 2 || batch[0] == 14 {
                batch
                    .iter()
                    .map(|sequence_number| vec![*sequence_number])
                    .collect()
            } else {
                vec![batch.clone()]
            }
        })
        .collect();
    assert!(batches.contains(&vec![3]) && batches.contains(&vec![16]));
    fixtures_0_5::assert_replay_delivers(&store, &batches);
}

#[test]
fn a_0_5_x_log_that_grew_after_the_migration_is_refused_with_the_remedy() {
    let (_folder, path) = copy_of("0.5.2");
    drop(SqliteStore::open(&path).unwrap());
    // What 0.5.2 does when the application goes back to it and appends.
    execute(
        &path,
        "INSERT INTO events (sequence_number, occurred_at, event_type, payload)
         VALUES (22, '2030-01-01T00:00:00.123456789Z', 'appended-by-0.5.2', '{}')",
    );
    let before = old_tables(&path);
    let events_before = count(&path, "SELECT COUNT(*) FROM factstr_events");

    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("the 0.5.x log has events the FACTSTR log lacks"),
        "{message}"
    );
    assert!(message.contains("22"), "{message}");
    assert!(
        message.contains("drop the tables factstr_metadata"),
        "{message}"
    );
    assert_eq!(old_tables(&path), before);
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM factstr_events"),
        events_before
    );

    // The remedy that keeps the 0.5.x log: drop the FACTSTR tables.
    execute(
        &path,
        "DROP TABLE factstr_metadata; DROP TABLE factstr_events;
         DROP TABLE factstr_payload_index; DROP TABLE factstr_durable_streams;",
    );
    let store = SqliteStore::open(&path).unwrap();
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), 22);
    assert_eq!(records[21].event_type, "appended-by-0.5.2");
}

#[test]
fn a_0_5_x_log_whose_newest_event_differs_from_ours_is_refused() {
    let (_folder, path) = copy_of("0.5.2");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .append(vec![NewEvent::new("appended-by-factstr", json!({}))])
            .unwrap();
    }
    execute(
        &path,
        "INSERT INTO events (sequence_number, occurred_at, event_type, payload)
         VALUES (22, '2030-01-01T00:00:00Z', 'appended-by-0.5.2', '{}')",
    );
    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains("differs"), "{message}");
}

#[test]
fn a_migrated_file_whose_0_5_x_tables_were_dropped_opens() {
    let (_folder, path) = copy_of("0.5.2");
    drop(SqliteStore::open(&path).unwrap());
    execute(
        &path,
        "DROP TABLE events; DROP TABLE append_batches; DROP TABLE store_metadata;
         DROP TABLE subscriber_cursors;",
    );
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_every_event_kept(&store, &expected("0.5.2"));
}

#[test]
fn threads_opening_a_0_5_x_file_at_once_migrate_it_once() {
    let (_folder, path) = copy_of("0.5.2");
    let fixture = expected("0.5.2");
    let openers = 8;
    let barrier = Arc::new(Barrier::new(openers));
    let stores: Vec<SqliteStore> = (0..openers)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let path = path.clone();
            std::thread::spawn(move || {
                barrier.wait();
                SqliteStore::open_with(
                    &path,
                    SqliteStoreOptions::default().busy_timeout(Duration::from_secs(60)),
                )
                .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|opener| opener.join().unwrap())
        .collect();
    for store in &stores {
        fixtures_0_5::assert_every_event_kept(store, &fixture);
    }
    drop(stores);
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM factstr_events"),
        i64::try_from(fixture.events.len()).unwrap()
    );
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM factstr_durable_streams"),
        2
    );
}

/// The entry point of the child processes of
/// `processes_opening_a_0_5_x_file_at_once_migrate_it_once`; does nothing in
/// a normal run.
#[test]
fn child_process_opening_a_0_5_x_file() {
    let Ok(path) = std::env::var("FACTSTR_SQLITE_TEST_0_5_FILE") else {
        return;
    };
    let store = SqliteStore::open_with(
        &path,
        SqliteStoreOptions::default().busy_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let events = store.query(&EventQuery::all()).unwrap().event_records.len();
    assert_eq!(events, expected("0.5.2").events.len());
}

#[test]
fn processes_opening_a_0_5_x_file_at_once_migrate_it_once() {
    let (_folder, path) = copy_of("0.5.2");
    let children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_process_opening_a_0_5_x_file",
                    "--test-threads=1",
                ])
                .env("FACTSTR_SQLITE_TEST_0_5_FILE", &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let fixture = expected("0.5.2");
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM factstr_events"),
        i64::try_from(fixture.events.len()).unwrap()
    );
    let store = SqliteStore::open(&path).unwrap();
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_replay_delivers(&store, &fixture.batches);
}

#[test]
fn a_file_with_the_0_5_x_tables_and_one_more_is_refused_and_left_unchanged() {
    let (_folder, path) = copy_of("0.5.2");
    execute(&path, "CREATE TABLE accounts (id TEXT PRIMARY KEY)");
    let before = std::fs::read(&path).unwrap();
    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(message.contains("not a FACTSTR database"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn tables_named_like_0_5_x_but_with_other_columns_are_refused_and_left_unchanged() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("other.sqlite");
    execute(
        &path,
        "CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE append_batches (first_sequence_number INTEGER PRIMARY KEY, last_sequence_number INTEGER NOT NULL);
         CREATE TABLE store_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE subscriber_cursors (subscriber_id TEXT PRIMARY KEY, event_query TEXT NOT NULL, last_processed_sequence_number INTEGER NOT NULL);
         INSERT INTO store_metadata VALUES ('store_format_version', '1');
         INSERT INTO events VALUES (1, 'x');",
    );
    let before = std::fs::read(&path).unwrap();
    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(
        message.contains("its table events has the columns"),
        "{message}"
    );
    assert!(message.contains("left unchanged"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_0_5_x_layout_with_unknown_metadata_is_refused_and_left_unchanged() {
    let (_folder, path) = copy_of("0.5.2");
    execute(
        &path,
        "UPDATE store_metadata SET value = '2' WHERE key = 'store_format_version'",
    );
    let before = std::fs::read(&path).unwrap();
    let message = invalid_input_message(SqliteStore::open(&path));
    assert!(
        message.contains("store_format_version = \"2\""),
        "{message}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_0_5_x_log_with_a_payload_that_is_not_json_is_refused_without_change() {
    let (_folder, path) = copy_of("0.5.2");
    execute(
        &path,
        "UPDATE events SET payload = '{oops' WHERE sequence_number = 5",
    );
    let before = old_tables(&path);
    match SqliteStore::open(&path) {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(
                message.contains("payload of event 5 is not JSON"),
                "{message}"
            );
            assert!(message.contains("nothing was changed"), "{message}");
        }
        other => panic!("expected BackendFailure, got {other:?}"),
    }
    assert_eq!(old_tables(&path), before);
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'factstr%'"
        ),
        0
    );
}
