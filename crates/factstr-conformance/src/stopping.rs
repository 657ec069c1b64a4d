//! How streams stop: unsubscribing, closing the store, and failures, and
//! what a stream reports about it.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use factstr::{
    DurableStream, EventRecord, EventStore, EventStream, HandleStream, StreamHandlerError,
    StreamStopReason,
};

use crate::support::{Deliveries, Gate, PATIENCE, numbered, sequence_numbers};

fn shapes(batches: &[Vec<EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

/// Waits until `stream` has stopped and returns why.
fn stop_reason(stream: &EventStream) -> StreamStopReason {
    let (sender, receiver) = mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = sender.send(reason.clone());
    });
    receiver
        .recv_timeout(PATIENCE)
        .expect("the stream stopped within the patience")
}

/// A handler that records each batch, then waits at `gate`.
fn gated_handler(deliveries: &Arc<Deliveries>, gate: &Arc<Gate>) -> HandleStream {
    let (deliveries, gate) = (Arc::clone(deliveries), Arc::clone(gate));
    HandleStream::new(move |batch| {
        deliveries.record(batch);
        gate.wait();
        async { Ok(()) }
    })
}

pub fn batches_committed_before_unsubscribe_are_still_delivered<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let (deliveries, gate) = (Deliveries::new(), Gate::new());
    let stream = store.stream_all(gated_handler(&deliveries, &gate)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(1);
    // The handler holds batch 1; batches 2-3 wait for it.
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 2)).unwrap();
    stream.unsubscribe();
    store.append(numbered("a", 1)).unwrap();
    gate.open();
    assert_eq!(stop_reason(&stream), StreamStopReason::Unsubscribed);
    assert_eq!(
        shapes(&deliveries.batches()),
        vec![vec![1], vec![2], vec![3, 4]]
    );
}

pub fn an_unsubscribed_stream_reports_that_it_stopped<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let stream = store.stream_all(deliveries.handler()).unwrap();
    assert!(stream.is_running());
    assert_eq!(stream.stop_reason(), None);
    stream.unsubscribe();
    assert_eq!(stop_reason(&stream), StreamStopReason::Unsubscribed);
    assert!(!stream.is_running());
    assert_eq!(stream.stop_reason(), Some(StreamStopReason::Unsubscribed));
}

pub fn dropping_the_store_first_delivers_committed_batches_to_live_streams<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let slow = {
        let deliveries = Arc::clone(&deliveries);
        HandleStream::new(move |batch| {
            let deliveries = Arc::clone(&deliveries);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                deliveries.record(batch);
                Ok(())
            }
        })
    };
    let stream = store.stream_all(slow).unwrap();
    let filtered = Deliveries::new();
    let only_b = store
        .stream_to(
            &factstr::EventQuery::for_event_types(["b"]),
            filtered.handler(),
        )
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("b", 2)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    drop(store);
    assert_eq!(
        shapes(&deliveries.batches()),
        vec![vec![1], vec![2, 3], vec![4]]
    );
    assert_eq!(shapes(&filtered.batches()), vec![vec![2, 3]]);
    assert_eq!(stream.stop_reason(), Some(StreamStopReason::StoreClosed));
    assert_eq!(only_b.stop_reason(), Some(StreamStopReason::StoreClosed));
}

pub fn dropping_the_store_waits_only_a_bounded_time_for_a_stuck_handler<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + 'static,
{
    let store = new_store();
    let (deliveries, gate) = (Deliveries::new(), Gate::new());
    let stream = store.stream_all(gated_handler(&deliveries, &gate)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(1);
    let (dropped_tx, dropped_rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        let _ = dropped_tx.send(());
    });
    // The store closes while the handler is still stuck at the gate.
    dropped_rx
        .recv_timeout(PATIENCE)
        .expect("dropping the store returned while a handler was stuck");
    assert!(
        stream.stop_reason().is_none(),
        "the stuck handler still runs"
    );
    gate.open();
    assert_eq!(stop_reason(&stream), StreamStopReason::StoreClosed);
}

pub fn a_durable_stream_that_fails_live_reports_why_it_stopped<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    let failing = HandleStream::new(|batch: Vec<EventRecord>| async move {
        if batch[0].sequence_number >= 2 {
            Err(StreamHandlerError::new("projection broke"))
        } else {
            Ok(())
        }
    });
    let stream = store
        .stream_all_durable(&DurableStream::new("breaks"), failing)
        .unwrap();
    assert!(stream.is_running());
    store.append(numbered("a", 2)).unwrap();
    match stop_reason(&stream) {
        StreamStopReason::HandlerFailed {
            first_sequence_number,
            message,
        } => {
            assert_eq!(first_sequence_number, 2);
            assert!(message.contains("projection broke"), "{message}");
        }
        other => panic!("stopped for {other:?}"),
    }
    assert!(!stream.is_running());
}

pub fn a_durable_stream_whose_handler_panics_live_reports_the_panic<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let panicking = HandleStream::new(|_batch: Vec<EventRecord>| async move {
        panic!("handler exploded");
        #[allow(unreachable_code)]
        Ok(())
    });
    let stream = store
        .stream_all_durable(&DurableStream::new("panics"), panicking)
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    match stop_reason(&stream) {
        StreamStopReason::HandlerFailed { message, .. } => {
            assert!(message.contains("handler exploded"), "{message}");
        }
        other => panic!("stopped for {other:?}"),
    }
}

pub fn a_live_stream_keeps_running_after_a_handler_error<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let failing_once = {
        let deliveries = Arc::clone(&deliveries);
        HandleStream::new(move |batch: Vec<EventRecord>| {
            let first = batch[0].sequence_number;
            deliveries.record(batch);
            async move {
                if first == 1 {
                    Err(StreamHandlerError::new("first batch fails"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let stream = store.stream_all(failing_once).unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(2);
    assert!(stream.is_running());
    assert_eq!(stream.stop_reason(), None);
}

pub fn a_stop_callback_registered_after_the_stop_runs_at_once<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let stream = store.stream_all(Deliveries::new().handler()).unwrap();
    stream.unsubscribe();
    assert_eq!(stop_reason(&stream), StreamStopReason::Unsubscribed);
    let (sender, receiver) = mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = sender.send(reason.clone());
    });
    assert_eq!(
        receiver
            .try_recv()
            .expect("the callback ran during on_stop"),
        StreamStopReason::Unsubscribed
    );
}
