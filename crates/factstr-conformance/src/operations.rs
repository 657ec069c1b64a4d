//! Cases for [`StoreOperations`], what the `factstr` command does to a
//! store: an import reaches the store's live streams and writes nothing
//! when it does not continue the log; a durable stream's cursor is set or
//! its record deleted only while the stream runs nowhere.
//!
//! [`persistent_conformance_tests!`](crate::persistent_conformance_tests)
//! runs them for every persistent store (the stores the command opens).

use std::sync::mpsc;

use chrono::DateTime;
use factstr::backend::StoreOperations;
use factstr::{
    DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, HandleStream, NewEvent,
};
use serde_json::json;

use crate::persistent::Persistent;
use crate::support::{Deliveries, PATIENCE, eventually};

/// A record as an export holds it: event `sequence_number`, committed at
/// `micros` after the epoch.
fn exported(sequence_number: u64, micros: i64) -> EventRecord {
    EventRecord {
        sequence_number,
        occurred_at: DateTime::from_timestamp_micros(micros).expect("a valid commit time"),
        event_type: "imported".to_owned(),
        payload: json!({"n": sequence_number}),
    }
}

pub fn an_import_reaches_live_streams_and_a_misfit_writes_nothing<L, S>(
    store: &Persistent<'_, L, S>,
) where
    S: EventStore + StoreOperations + Send + 'static,
{
    let location = store.new_location();
    let store = store.open(&location);
    let deliveries = Deliveries::new();
    let _stream = store.stream_all(deliveries.handler()).unwrap();
    let batches = vec![
        vec![exported(1, 1_000), exported(2, 1_000)],
        vec![exported(3, 2_000)],
    ];
    store.import_batches(&batches).unwrap();
    assert_eq!(deliveries.wait_for_batches(2), batches);
    assert_eq!(store.read_batches(0, 100).unwrap(), batches);
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        3
    );
    let stats = store.log_stats().unwrap();
    assert_eq!((stats.facts, stats.batches, stats.head), (3, 2, 3));

    // Not right after the head, or committed before the last commit.
    for misfit in [
        vec![vec![exported(5, 3_000)]],
        vec![vec![exported(4, 1_500)]],
    ] {
        assert!(matches!(
            store.import_batches(&misfit),
            Err(EventStoreError::InvalidInput { .. })
        ));
    }
    assert_eq!(store.log_stats().unwrap(), stats);
    assert_eq!(deliveries.batches(), batches);

    // A refused import holds nothing: the log takes the next append at once.
    let appended = within_patience("an append after refused imports", move || {
        store
            .append(vec![NewEvent::new("appended", json!({}))])
            .map(|result| result.first_sequence_number)
    });
    assert_eq!(appended.unwrap(), 4);
}

/// Runs `work` on a thread of its own and returns its result; panics when it
/// takes longer than [`PATIENCE`] (a call waiting for a lock nobody
/// releases).
fn within_patience<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

pub fn durable_cursors_move_only_while_the_stream_is_stopped<L, S>(store: &Persistent<'_, L, S>)
where
    S: EventStore + StoreOperations,
{
    let location = store.new_location();
    let store = store.open(&location);
    store
        .import_batches(&[vec![exported(1, 1), exported(2, 1)]])
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
    let while_running = store.set_durable_stream("p", &query, 0);
    assert!(
        matches!(while_running, Err(EventStoreError::BackendFailure { .. })),
        "while the stream runs: {while_running:?}"
    );
    assert!(store.delete_durable_stream("p").is_err());
    running.unsubscribe();
    drop(running);
    eventually("the stopped stream releasing its name", || {
        store.set_durable_stream("p", &query, 0).is_ok()
    });
    assert_eq!(store.durable_streams().unwrap()[0].cursor, 0);
    let other_query = store.set_durable_stream("p", &EventQuery::all(), 0);
    assert!(
        matches!(other_query, Err(EventStoreError::InvalidInput { .. })),
        "a different query: {other_query:?}"
    );
    let past_the_head = store.set_durable_stream("p", &query, 3);
    assert!(
        matches!(past_the_head, Err(EventStoreError::InvalidInput { .. })),
        "a cursor past the head: {past_the_head:?}"
    );
    // Refused changes hold nothing: the stream starts again at once.
    let deliveries = Deliveries::new();
    let restarted = store
        .stream_to_durable(&DurableStream::new("p"), &query, deliveries.handler())
        .unwrap();
    assert_eq!(
        deliveries.wait_for_batches(1),
        vec![vec![exported(1, 1), exported(2, 1)]]
    );
    restarted.unsubscribe();
    drop(restarted);
    eventually("the stopped stream releasing its name", || {
        store
            .delete_durable_stream("p")
            .is_ok_and(|deleted| deleted)
    });
    assert!(!store.delete_durable_stream("p").unwrap());
}
