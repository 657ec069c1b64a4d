//! What survives closing and reopening a store: events with their batch
//! shapes and commit times, the outcome of conditional appends, durable
//! cursors and durable queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use factstr::{DurableStream, EventFilter, EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_conformance::support::{Deliveries, eventually, numbered, sequence_numbers};
use factstr_sqlite::SqliteStore;
use serde_json::json;

fn shapes(batches: &[Vec<factstr::EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

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
fn events_batch_shapes_and_commit_times_survive_reopening() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let before = {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("a", 3)).unwrap();
        store
            .append(vec![NewEvent::new(
                "b",
                json!({"nested": [1, {"x": null}], "f": 1.5}),
            )])
            .unwrap();
        store
            .append(vec![
                NewEvent::new("c", json!("text")),
                NewEvent::new("c", json!([true, false])),
            ])
            .unwrap();
        store.query(&EventQuery::all()).unwrap()
    };

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.query(&EventQuery::all()).unwrap(), before);
    let replayed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("shapes"), replayed.handler())
        .unwrap();
    assert_eq!(
        shapes(&replayed.batches()),
        vec![vec![1, 2, 3], vec![4], vec![5, 6]]
    );
    assert_eq!(replayed.batches().concat(), before.event_records);
}

#[test]
fn sequence_numbers_and_commit_times_continue_after_reopening() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let first = {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("a", 2)).unwrap();
        store.query(&EventQuery::all()).unwrap().event_records
    };
    let store = SqliteStore::open(&path).unwrap();
    let result = store.append(numbered("a", 1)).unwrap();
    assert_eq!(result.first_sequence_number, 3);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert!(records[2].occurred_at >= first[1].occurred_at);
}

#[test]
fn outcomes_of_conditional_appends_survive_reopening() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let account = EventQuery::all().with_filters([EventFilter::for_event_types(["deposited"])
        .with_payload_predicates([json!({"account": "a1"})])]);
    let deposit = |amount: u64| {
        vec![NewEvent::new(
            "deposited",
            json!({"account": "a1", "amount": amount}),
        )]
    };
    {
        let store = SqliteStore::open(&path).unwrap();
        store.append_if(deposit(1), &account, None).unwrap();
        let conflict = store.append_if(deposit(2), &account, None);
        assert_eq!(
            conflict,
            Err(EventStoreError::ConditionalAppendConflict {
                expected: None,
                actual: Some(1)
            })
        );
        store
            .append(vec![NewEvent::new("deposited", json!({"account": "a2"}))])
            .unwrap();
        store.append_if(deposit(3), &account, Some(1)).unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    let result = store.query(&account).unwrap();
    assert_eq!(sequence_numbers(&result.event_records), vec![1, 3]);
    assert_eq!(result.current_context_version, Some(3));
    let amounts: Vec<_> = result
        .event_records
        .iter()
        .map(|record| record.payload["amount"].clone())
        .collect();
    assert_eq!(amounts, vec![json!(1), json!(3)]);
    // The conflict consumed no sequence number, before or after reopening.
    assert_eq!(
        store.append_if(deposit(4), &account, Some(1)),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(1),
            actual: Some(3)
        })
    );
    assert_eq!(
        store
            .append_if(deposit(4), &account, Some(3))
            .unwrap()
            .first_sequence_number,
        4
    );
}

#[test]
fn reopened_durable_stream_resumes_strictly_after_its_stored_cursor() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let name = "projection";
    {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("a", 2)).unwrap();
        let first = Deliveries::new();
        let stream = store
            .stream_all_durable(&DurableStream::new(name), first.handler())
            .unwrap();
        store.append(numbered("a", 3)).unwrap();
        first.wait_for_sequence(5);
        eventually("the cursor reaching the file", || {
            stored_cursor(&path, name) == Some(5)
        });
        drop(stream);
    }
    {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("b", 1)).unwrap();
        store.append(numbered("b", 2)).unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new(name), resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![6], vec![7, 8]]);
}

#[test]
fn pending_cursors_are_written_when_the_stream_or_the_store_closes() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    for close_store_first in [false, true] {
        let name = format!("closing-{close_store_first}");
        let store = SqliteStore::open(&path).unwrap();
        let last = store.append(numbered("a", 4)).unwrap().last_sequence_number;
        let replayed = Deliveries::new();
        // Registration returns after the replay; its cursor may still be pending.
        let stream = store
            .stream_all_durable(&DurableStream::new(&name), replayed.handler())
            .unwrap();
        assert_eq!(replayed.sequence_numbers().last(), Some(&last));
        if close_store_first {
            drop(store);
            drop(stream);
        } else {
            drop(stream);
            drop(store);
        }
        assert_eq!(stored_cursor(&path, &name), Some(last));
    }
}

#[test]
fn durable_query_survives_reopening_and_a_different_query_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let durable = DurableStream::new("only-a");
    let only_a = EventQuery::for_event_types(["a"]);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.append(numbered("a", 1)).unwrap();
        store.append(numbered("b", 1)).unwrap();
        let deliveries = Deliveries::new();
        let _stream = store
            .stream_to_durable(&durable, &only_a, deliveries.handler())
            .unwrap();
        assert_eq!(deliveries.sequence_numbers(), vec![1]);
    }
    let store = SqliteStore::open(&path).unwrap();
    let refused = store.stream_to_durable(
        &durable,
        &EventQuery::for_event_types(["b"]),
        Deliveries::new().handler(),
    );
    assert!(
        matches!(refused, Err(EventStoreError::BackendFailure { ref message }) if message.contains("different query")),
        "{refused:?}"
    );
    store.append(numbered("a", 1)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_to_durable(&durable, &only_a, deliveries.handler())
        .unwrap();
    assert_eq!(deliveries.sequence_numbers(), vec![3]);
}

#[test]
fn database_path_is_the_path_given() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("nested/folders/events.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.database_path(), path.as_path());
    assert!(path.exists());
}
