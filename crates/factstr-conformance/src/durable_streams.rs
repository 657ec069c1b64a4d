//! Durable streams: replay with batch shapes, hand-over to live, cursors,
//! failures, and name rules.

use std::sync::Arc;
use std::time::Duration;

use factstr::{
    DurableStream, EventQuery, EventStore, EventStoreError, HandleStream, StreamHandlerError,
};
use serde_json::json;

use crate::support::{Deliveries, Gate, event, eventually, numbered, sequence_numbers};

fn shapes(batches: &[Vec<factstr::EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

/// A handler that records batches and fails (or panics) on the batch that
/// starts at `failing_sequence`.
fn failing_at(deliveries: &Arc<Deliveries>, failing_sequence: u64, panic: bool) -> HandleStream {
    let deliveries = Arc::clone(deliveries);
    HandleStream::new(move |batch| {
        let fails = batch[0].sequence_number == failing_sequence;
        deliveries.record(batch);
        async move {
            if fails && panic {
                panic!("handler panics on purpose at {failing_sequence}");
            }
            if fails {
                return Err(StreamHandlerError::new(format!(
                    "refused {failing_sequence}"
                )));
            }
            Ok(())
        }
    })
}

fn expect_backend_failure<T: std::fmt::Debug>(result: Result<T, EventStoreError>) -> String {
    match result {
        Err(EventStoreError::BackendFailure { message }) => message,
        other => panic!("expected BackendFailure, got {other:?}"),
    }
}

/// Registers `name` again, retrying while the previous registration still
/// finishes its failed handler call.
fn register_again<S: EventStore>(
    store: &S,
    durable: &DurableStream,
    handle: HandleStream,
) -> factstr::EventStream {
    let mut stream = None;
    eventually("the durable stream name becoming free", || {
        match store.stream_all_durable(durable, handle.clone()) {
            Ok(registered) => {
                stream = Some(registered);
                true
            }
            Err(EventStoreError::BackendFailure { message })
                if message.contains("already active") =>
            {
                false
            }
            Err(error) => panic!("re-registration failed: {error}"),
        }
    });
    stream.unwrap()
}

pub fn first_registration_replays_every_batch_with_its_shape<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 3)).unwrap();
    store.append(numbered("b", 1)).unwrap();
    store.append(numbered("a", 2)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("projection"), deliveries.handler())
        .unwrap();
    assert_eq!(
        shapes(&deliveries.batches()),
        vec![vec![1, 2, 3], vec![4], vec![5, 6]]
    );
    let replayed = deliveries.batches().concat();
    assert_eq!(
        replayed,
        store.query(&EventQuery::all()).unwrap().event_records
    );
}

pub fn registration_returns_after_the_replay_finished<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    for _ in 0..10 {
        store.append(numbered("a", 1)).unwrap();
    }
    let deliveries = Deliveries::new();
    let slow = {
        let deliveries = Arc::clone(&deliveries);
        HandleStream::new(move |batch| {
            let deliveries = Arc::clone(&deliveries);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                deliveries.record(batch);
                Ok(())
            }
        })
    };
    let _stream = store
        .stream_all_durable(&DurableStream::new("slow"), slow)
        .unwrap();
    assert_eq!(deliveries.batches().len(), 10);
}

pub fn durable_stream_continues_live_after_replay<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("live"), deliveries.handler())
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 2)).unwrap();
    assert_eq!(
        shapes(&deliveries.wait_for_sequence(5)),
        vec![vec![1, 2], vec![3], vec![4, 5]]
    );
}

pub fn re_registration_resumes_after_the_cursor<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let durable = DurableStream::new("resume");
    store.append(numbered("a", 2)).unwrap();
    let first = Deliveries::new();
    let stream = store.stream_all_durable(&durable, first.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    first.wait_for_sequence(3);
    stream.unsubscribe();
    store.append(numbered("a", 2)).unwrap();

    let second = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, second.handler())
        .unwrap();
    assert_eq!(shapes(&second.batches()), vec![vec![4, 5]]);
    assert_eq!(shapes(&first.batches()), vec![vec![1, 2], vec![3]]);
}

pub fn stream_to_durable_replays_only_matching_events_per_batch<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store
        .append(vec![
            event("a", json!(1)),
            event("b", json!(2)),
            event("a", json!(3)),
        ])
        .unwrap();
    store.append(numbered("b", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_to_durable(
            &DurableStream::new("only-a"),
            &EventQuery::for_event_types(["a"]),
            deliveries.handler(),
        )
        .unwrap();
    assert_eq!(shapes(&deliveries.batches()), vec![vec![1, 3], vec![5]]);
    store
        .append(vec![event("b", json!(6)), event("a", json!(7))])
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(
        shapes(&deliveries.wait_for_sequence(8)),
        vec![vec![1, 3], vec![5], vec![7], vec![8]]
    );
}

pub fn replay_handler_error_fails_registration_and_keeps_the_cursor<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    replay_failure_keeps_the_cursor(new_store, false);
}

pub fn replay_handler_panic_fails_registration_and_keeps_the_cursor<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    replay_failure_keeps_the_cursor(new_store, true);
}

fn replay_failure_keeps_the_cursor<S: EventStore>(new_store: &dyn Fn() -> S, panic: bool) {
    let store = new_store();
    let durable = DurableStream::new("fragile");
    for _ in 0..3 {
        store.append(numbered("a", 1)).unwrap();
    }
    let failing = Deliveries::new();
    let message =
        expect_backend_failure(store.stream_all_durable(&durable, failing_at(&failing, 2, panic)));
    assert!(message.contains("fragile"), "{message}");
    assert_eq!(shapes(&failing.batches()), vec![vec![1], vec![2]]);

    let healthy = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, healthy.handler())
        .unwrap();
    assert_eq!(shapes(&healthy.batches()), vec![vec![2], vec![3]]);
}

pub fn live_handler_error_stops_the_durable_stream_and_redelivers_on_re_registration<
    S: EventStore,
>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let durable = DurableStream::new("live-failure");
    let failing = Deliveries::new();
    let stream = store
        .stream_all_durable(&durable, failing_at(&failing, 2, false))
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    failing.wait_for_sequence(2);
    store.append(numbered("a", 1)).unwrap();

    let healthy = Deliveries::new();
    let _again = register_again(&store, &durable, healthy.handler());
    assert_eq!(shapes(&healthy.batches()), vec![vec![2], vec![3]]);
    assert_eq!(shapes(&failing.batches()), vec![vec![1], vec![2]]);
    drop(stream);
}

pub fn registering_an_active_name_is_a_backend_failure<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let durable = DurableStream::new("taken");
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, deliveries.handler())
        .unwrap();
    let message = expect_backend_failure(store.stream_all_durable(&durable, deliveries.handler()));
    assert!(message.contains("taken"), "{message}");
    expect_backend_failure(store.stream_to_durable(
        &durable,
        &EventQuery::all(),
        deliveries.handler(),
    ));
}

pub fn registering_a_name_with_a_different_query_is_a_backend_failure<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let durable = DurableStream::new("shaped");
    let deliveries = Deliveries::new();
    let only_a = EventQuery::for_event_types(["a"]);
    store
        .stream_to_durable(&durable, &only_a, deliveries.handler())
        .unwrap()
        .unsubscribe();
    let message = expect_backend_failure(store.stream_to_durable(
        &durable,
        &EventQuery::for_event_types(["b"]),
        deliveries.handler(),
    ));
    assert!(message.contains("shaped"), "{message}");
    expect_backend_failure(store.stream_all_durable(&durable, deliveries.handler()));
    let _same_query = store
        .stream_to_durable(&durable, &only_a, deliveries.handler())
        .unwrap();
}

pub fn min_sequence_number_does_not_change_a_durable_query<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 3)).unwrap();
    let durable = DurableStream::new("cursor-ignored");
    let deliveries = Deliveries::new();
    let query = EventQuery::for_event_types(["a"]);
    store
        .stream_to_durable(&durable, &query, deliveries.handler())
        .unwrap()
        .unsubscribe();
    store.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_to_durable(
            &durable,
            &query.clone().with_min_sequence_number(1),
            resumed.handler(),
        )
        .unwrap();
    assert_eq!(shapes(&deliveries.batches()), vec![vec![1, 2, 3]]);
    assert_eq!(shapes(&resumed.batches()), vec![vec![4]]);

    let fresh = Deliveries::new();
    let _fresh = store
        .stream_to_durable(
            &DurableStream::new("fresh"),
            &query.with_min_sequence_number(3),
            fresh.handler(),
        )
        .unwrap();
    assert_eq!(shapes(&fresh.batches()), vec![vec![1, 2, 3], vec![4]]);
}

pub fn empty_durable_name_is_invalid_input<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let unnamed = DurableStream::new("");
    for result in [
        store.stream_all_durable(&unnamed, deliveries.handler()),
        store.stream_to_durable(&unnamed, &EventQuery::all(), deliveries.handler()),
    ] {
        match result {
            Err(EventStoreError::InvalidInput { message }) => {
                assert!(message.contains("name"), "{message}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}

pub fn name_is_free_again_after_unsubscribe<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let durable = DurableStream::new("reusable");
    let deliveries = Deliveries::new();
    store
        .stream_all_durable(&durable, deliveries.handler())
        .unwrap()
        .unsubscribe();
    let stream = store
        .stream_all_durable(&durable, deliveries.handler())
        .unwrap();
    drop(stream);
    let _third = store
        .stream_all_durable(&durable, deliveries.handler())
        .unwrap();
}

pub fn re_registration_waits_for_an_unsubscribed_stream_to_finish_its_handler<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let durable = DurableStream::new("handover");
    let gate = Gate::new();
    let first = Deliveries::new();
    let slow = {
        let (gate, first) = (Arc::clone(&gate), Arc::clone(&first));
        HandleStream::new(move |batch| {
            first.record(batch);
            let gate = Arc::clone(&gate);
            async move {
                gate.wait();
                Ok(())
            }
        })
    };
    let stream = store.stream_all_durable(&durable, slow).unwrap();
    store.append(numbered("a", 1)).unwrap();
    first.wait_for_sequence(1);
    // The handler is still running: the name is not free yet, but it will be.
    stream.unsubscribe();
    let second = Deliveries::new();
    let registering = {
        let (store, durable, handler) = (Arc::clone(&store), durable.clone(), second.handler());
        std::thread::spawn(move || store.stream_all_durable(&durable, handler))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !registering.is_finished(),
        "registration returned while the old handler still ran"
    );
    gate.open();
    let _again = registering.join().unwrap().unwrap();
    // Batch 1 was handled by the first registration before it let go.
    assert!(second.batches().is_empty());
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(shapes(&second.wait_for_sequence(2)), vec![vec![2]]);
}

pub fn a_handler_re_registering_its_own_stopped_name_is_refused_not_deadlocked<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let own: Arc<std::sync::Mutex<Option<factstr::EventStream>>> = Arc::default();
    let (outcome_tx, outcome_rx) = std::sync::mpsc::channel();
    let handler = {
        let (store, own) = (Arc::clone(&store), Arc::clone(&own));
        let outcome_tx = std::sync::Mutex::new(outcome_tx);
        HandleStream::new(move |_batch| {
            if let Some(stream) = own.lock().unwrap().take() {
                stream.unsubscribe();
                let again = store.stream_all_durable(
                    &DurableStream::new("self"),
                    HandleStream::new(|_| async { Ok(()) }),
                );
                let _ = outcome_tx
                    .lock()
                    .unwrap()
                    .send(again.map(|stream| stream.id()));
            }
            async { Ok(()) }
        })
    };
    *own.lock().unwrap() = Some(
        store
            .stream_all_durable(&DurableStream::new("self"), handler)
            .unwrap(),
    );
    store.append(numbered("a", 1)).unwrap();
    let outcome = outcome_rx
        .recv_timeout(crate::support::PATIENCE)
        .expect("the handler finished");
    assert!(
        matches!(outcome, Err(EventStoreError::BackendFailure { .. })),
        "{outcome:?}"
    );
}

pub fn durable_streams_with_different_names_keep_separate_cursors<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    let first = Deliveries::new();
    store
        .stream_all_durable(&DurableStream::new("one"), first.handler())
        .unwrap()
        .unsubscribe();
    store.append(numbered("a", 1)).unwrap();
    let second = Deliveries::new();
    let _second = store
        .stream_all_durable(&DurableStream::new("two"), second.handler())
        .unwrap();
    let resumed = Deliveries::new();
    let _resumed = store
        .stream_all_durable(&DurableStream::new("one"), resumed.handler())
        .unwrap();
    assert_eq!(shapes(&second.batches()), vec![vec![1], vec![2]]);
    assert_eq!(shapes(&resumed.batches()), vec![vec![2]]);
}
