//! `StoreOperations` on PostgreSQL: an import reaches the store's live streams
//! and writes nothing when it does not continue the log; durable cursors
//! move only while their stream is stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::DateTime;
use factstr::backend::StoreOperations;
use factstr::{DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, HandleStream};
use serde_json::json;

fn record(sequence_number: u64, micros: i64) -> EventRecord {
    EventRecord {
        sequence_number,
        occurred_at: DateTime::from_timestamp_micros(micros).unwrap(),
        event_type: "imported".to_owned(),
        payload: json!({"n": sequence_number}),
    }
}

#[test]
fn an_import_reaches_live_streams_and_a_misfit_writes_nothing() {
    let store = support::new_store();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&received);
    let _stream = store
        .stream_all(HandleStream::new(move |batch| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(batch);
                Ok(())
            }
        }))
        .unwrap();
    let batches = vec![
        vec![record(1, 1_000), record(2, 1_000)],
        vec![record(3, 2_000)],
    ];
    store.import_batches(&batches).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the stream did not get the import"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*received.lock().unwrap(), batches);
    assert_eq!(store.read_batches(0, 100).unwrap(), batches);
    let stats = store.log_stats().unwrap();
    assert_eq!((stats.facts, stats.batches, stats.head), (3, 2, 3));

    // Not right after the head, or committed before the last commit.
    for misfit in [vec![vec![record(5, 3_000)]], vec![vec![record(4, 1_500)]]] {
        assert!(matches!(
            store.import_batches(&misfit),
            Err(EventStoreError::InvalidInput { .. })
        ));
    }
    assert_eq!(store.log_stats().unwrap(), stats);
}

#[test]
fn durable_cursors_move_only_while_the_stream_is_stopped() {
    let store = support::new_store();
    store
        .import_batches(&[vec![record(1, 1), record(2, 1)]])
        .unwrap();
    let query = EventQuery::for_event_types(["imported"]);
    store.set_durable_stream("p", &query, 2).unwrap();
    let running = store
        .stream_to_durable(
            &DurableStream::new("p"),
            &query,
            HandleStream::new(|_| async { Ok(()) }),
        )
        .unwrap();
    let listed = store.durable_streams().unwrap();
    assert_eq!((listed[0].cursor, listed[0].active), (2, Some(true)));
    assert!(matches!(
        store.set_durable_stream("p", &query, 0),
        Err(EventStoreError::BackendFailure { .. })
    ));
    assert!(store.delete_durable_stream("p").is_err());
    running.unsubscribe();
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.set_durable_stream("p", &query, 0).is_err() {
        assert!(Instant::now() < deadline, "the stream kept its claim");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(store.durable_streams().unwrap()[0].cursor, 0);
    assert!(matches!(
        store.set_durable_stream("p", &EventQuery::all(), 0),
        Err(EventStoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.set_durable_stream("p", &query, 3),
        Err(EventStoreError::InvalidInput { .. })
    ));
    assert!(store.delete_durable_stream("p").unwrap());
    assert!(!store.delete_durable_stream("p").unwrap());
}
