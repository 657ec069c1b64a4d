//! Cases for stores that keep their log in a place several store instances
//! (and processes) can open: a file, a database schema.
//!
//! [`persistent_conformance_tests!`](crate::persistent_conformance_tests)
//! expands each case with two functions: `new_location()` makes a fresh,
//! empty place (and keeps it alive as long as its value lives), and
//! `open(&location)` opens one more store instance on it.

use std::sync::mpsc;

use factstr::{DurableStream, EventStore, EventStream, StreamStopReason};

use crate::support::{Deliveries, PATIENCE, numbered};

fn shapes(deliveries: &Deliveries) -> Vec<Vec<u64>> {
    deliveries
        .batches()
        .iter()
        .map(|batch| crate::support::sequence_numbers(batch))
        .collect()
}

fn wait_until_stopped(stream: EventStream) -> StreamStopReason {
    let (sender, receiver) = mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = sender.send(reason.clone());
    });
    drop(stream);
    receiver.recv_timeout(PATIENCE).expect("the stream stopped")
}

pub fn durable_registration_replays_what_another_instance_just_committed<L, S: EventStore>(
    new_location: &dyn Fn() -> L,
    open: &dyn Fn(&L) -> S,
) {
    let location = new_location();
    let first = open(&location);
    let second = open(&location);
    first.append(numbered("a", 1)).unwrap();
    first.append(numbered("a", 2)).unwrap();
    first.append(numbered("a", 1)).unwrap();
    // Registered at once: the second instance may not have heard of these
    // commits yet, but its replay must hold every one of them.
    let deliveries = Deliveries::new();
    let _stream = second
        .stream_all_durable(&DurableStream::new("everything"), deliveries.handler())
        .unwrap();
    assert_eq!(shapes(&deliveries), vec![vec![1], vec![2, 3], vec![4]]);
}

pub fn a_reopened_store_resumes_a_durable_stream_after_its_cursor<L, S: EventStore>(
    new_location: &dyn Fn() -> L,
    open: &dyn Fn(&L) -> S,
) {
    let location = new_location();
    let durable = DurableStream::new("projection");
    {
        let store = open(&location);
        store.append(numbered("a", 2)).unwrap();
        let deliveries = Deliveries::new();
        let stream = store
            .stream_all_durable(&durable, deliveries.handler())
            .unwrap();
        store.append(numbered("a", 1)).unwrap();
        deliveries.wait_for_sequence(3);
        assert_eq!(wait_until_stopped(stream), StreamStopReason::Unsubscribed);
    }
    let store = open(&location);
    store.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed), vec![vec![4]]);
}

pub fn closing_a_store_keeps_the_cursor_of_the_batch_its_stream_was_handling<L, S: EventStore>(
    new_location: &dyn Fn() -> L,
    open: &dyn Fn(&L) -> S,
) {
    let location = new_location();
    let durable = DurableStream::new("slow");
    {
        let store = open(&location);
        let deliveries = Deliveries::new();
        let slow = {
            let deliveries = std::sync::Arc::clone(&deliveries);
            factstr::HandleStream::new(move |batch| {
                let deliveries = std::sync::Arc::clone(&deliveries);
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    deliveries.record(batch);
                    Ok(())
                }
            })
        };
        let _stream = store.stream_all_durable(&durable, slow).unwrap();
        store.append(numbered("a", 1)).unwrap();
        store.append(numbered("a", 1)).unwrap();
        // Closed while the handler works on batch 1 and batch 2 waits: both
        // are delivered and their cursor is kept.
    }
    let store = open(&location);
    store.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed), vec![vec![3]]);
}

pub fn live_streams_receive_batches_another_instance_commits<L, S: EventStore>(
    new_location: &dyn Fn() -> L,
    open: &dyn Fn(&L) -> S,
) {
    let location = new_location();
    let first = open(&location);
    let second = open(&location);
    let deliveries = Deliveries::new();
    let _stream = second.stream_all(deliveries.handler()).unwrap();
    first.append(numbered("a", 2)).unwrap();
    second.append(numbered("b", 1)).unwrap();
    first.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(4);
    assert_eq!(shapes(&deliveries), vec![vec![1, 2], vec![3], vec![4]]);
}
