//! Live streams: batch shapes, filtering, ordering, isolation, unsubscribe.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factstr::backend::MAX_QUEUED_EVENTS;
use factstr::{EventQuery, EventStore, EventStream, HandleStream, StreamHandlerError};
use serde_json::json;

use crate::support::{Deliveries, Gate, event, numbered, sequence_numbers};

fn shapes(batches: &[Vec<factstr::EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

pub fn stream_all_delivers_each_committed_batch_as_one_batch<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let _stream = store.stream_all(deliveries.handler()).unwrap();
    store
        .append(vec![
            event("a", json!(1)),
            event("b", json!(2)),
            event("c", json!(3)),
        ])
        .unwrap();
    store.append(vec![event("d", json!(4))]).unwrap();
    let batches = deliveries.wait_for_batches(2);
    assert_eq!(shapes(&batches), vec![vec![1, 2, 3], vec![4]]);
    assert_eq!(batches[0][1].event_type, "b");
    assert_eq!(batches[0][1].payload, json!(2));
}

pub fn live_streams_never_replay_history<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let all = Deliveries::new();
    let matching = Deliveries::new();
    let _all = store.stream_all(all.handler()).unwrap();
    let _matching = store
        .stream_to(&EventQuery::for_event_types(["a"]), matching.handler())
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(shapes(&all.wait_for_sequence(3)), vec![vec![3]]);
    assert_eq!(shapes(&matching.wait_for_sequence(3)), vec![vec![3]]);
}

pub fn stream_to_delivers_the_matching_events_of_each_batch_as_one_batch<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_to(
            &EventQuery::for_event_types(["a", "c"]),
            deliveries.handler(),
        )
        .unwrap();
    store
        .append(vec![
            event("a", json!(1)),
            event("b", json!(2)),
            event("a", json!(3)),
            event("c", json!(4)),
        ])
        .unwrap();
    let batches = deliveries.wait_for_events(3);
    assert_eq!(shapes(&batches), vec![vec![1, 3, 4]]);
}

pub fn stream_to_delivers_nothing_for_batches_without_matches<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_to(&EventQuery::for_event_types(["a"]), deliveries.handler())
        .unwrap();
    store.append(numbered("b", 3)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(shapes(&deliveries.wait_for_sequence(4)), vec![vec![4]]);
}

pub fn stream_to_ignores_min_sequence_number<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let query = EventQuery::for_event_types(["a"]).with_min_sequence_number(1_000);
    let _stream = store.stream_to(&query, deliveries.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(shapes(&deliveries.wait_for_sequence(1)), vec![vec![1]]);
}

pub fn several_streams_each_receive_every_batch_meant_for_them<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let all = Deliveries::new();
    let only_a = Deliveries::new();
    let only_b = Deliveries::new();
    let also_all = Deliveries::new();
    let _streams = [
        store.stream_all(all.handler()).unwrap(),
        store
            .stream_to(&EventQuery::for_event_types(["a"]), only_a.handler())
            .unwrap(),
        store
            .stream_to(&EventQuery::for_event_types(["b"]), only_b.handler())
            .unwrap(),
        store.stream_all(also_all.handler()).unwrap(),
    ];
    store
        .append(vec![event("a", json!(1)), event("b", json!(2))])
        .unwrap();
    store.append(vec![event("b", json!(3))]).unwrap();
    store.append(vec![event("a", json!(4))]).unwrap();
    assert_eq!(
        shapes(&all.wait_for_sequence(4)),
        vec![vec![1, 2], vec![3], vec![4]]
    );
    assert_eq!(
        shapes(&also_all.wait_for_sequence(4)),
        vec![vec![1, 2], vec![3], vec![4]]
    );
    assert_eq!(shapes(&only_a.wait_for_sequence(4)), vec![vec![1], vec![4]]);
    assert_eq!(shapes(&only_b.wait_for_sequence(3)), vec![vec![2], vec![3]]);
}

pub fn failed_appends_deliver_nothing<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = store.stream_all(deliveries.handler()).unwrap();
    assert!(
        store
            .append_if(numbered("a", 1), &EventQuery::all(), None)
            .is_err()
    );
    assert!(store.append(vec![]).is_err());
    assert!(store.append(vec![event("", json!(1))]).is_err());
    store.append(numbered("marker", 1)).unwrap();
    assert_eq!(shapes(&deliveries.wait_for_sequence(2)), vec![vec![2]]);
}

pub fn live_record_equals_the_queried_record<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let _stream = store.stream_all(deliveries.handler()).unwrap();
    store
        .append(vec![
            event("a", json!({"x": [1, 1.5, "s"], "y": null})),
            event("b", json!(7)),
        ])
        .unwrap();
    let delivered = deliveries.wait_for_events(2).concat();
    assert_eq!(
        delivered,
        store.query(&EventQuery::all()).unwrap().event_records
    );
}

pub fn handler_is_awaited_before_the_next_batch<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let active = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let handler = {
        let (deliveries, active, overlapped) = (
            Arc::clone(&deliveries),
            Arc::clone(&active),
            Arc::clone(&overlapped),
        );
        HandleStream::new(move |batch| {
            let (deliveries, active, overlapped) = (
                Arc::clone(&deliveries),
                Arc::clone(&active),
                Arc::clone(&overlapped),
            );
            async move {
                if active.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlapped.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                active.fetch_sub(1, Ordering::SeqCst);
                deliveries.record(batch);
                Ok(())
            }
        })
    };
    let _stream = store.stream_all(handler).unwrap();
    for _ in 0..8 {
        store.append(numbered("a", 1)).unwrap();
    }
    let batches = deliveries.wait_for_batches(8);
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "a handler call started before the previous one finished"
    );
    assert_eq!(
        shapes(&batches),
        (1..=8).map(|n| vec![n]).collect::<Vec<_>>()
    );
}

pub fn handlers_can_use_tokio_timers_and_tasks<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let handler = {
        let deliveries = Arc::clone(&deliveries);
        HandleStream::new(move |batch| {
            let deliveries = Arc::clone(&deliveries);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let batch = tokio::spawn(async move { batch })
                    .await
                    .map_err(|error| StreamHandlerError::new(error.to_string()))?;
                deliveries.record(batch);
                Ok(())
            }
        })
    };
    let _stream = store.stream_all(handler).unwrap();
    store.append(numbered("a", 2)).unwrap();
    assert_eq!(shapes(&deliveries.wait_for_batches(1)), vec![vec![1, 2]]);
}

pub fn a_task_one_handler_spawns_and_blocks_does_not_stall_other_streams_timers<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let gate = Gate::new();
    let spawner = {
        let gate = Arc::clone(&gate);
        HandleStream::new(move |_batch| {
            let gate = Arc::clone(&gate);
            async move {
                // A task that blocks the thread it runs on, as careless
                // handler code does.
                drop(tokio::spawn(async move { gate.wait() }));
                Ok(())
            }
        })
    };
    let timed = Deliveries::new();
    let sleeper = {
        let timed = Arc::clone(&timed);
        HandleStream::new(move |batch| {
            let timed = Arc::clone(&timed);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                timed.record(batch);
                Ok(())
            }
        })
    };
    let _spawner = store.stream_all(spawner).unwrap();
    store.append(numbered("a", 1)).unwrap();
    let _sleeper = store.stream_all(sleeper).unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    timed.wait_for_sequence(3);
    gate.open();
}

pub fn slow_handler_delays_neither_other_streams_nor_appends<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let gate = Gate::new();
    let slow = Deliveries::new();
    let fast = Deliveries::new();
    let blocking = {
        let (gate, slow) = (Arc::clone(&gate), Arc::clone(&slow));
        HandleStream::new(move |batch| {
            let (gate, slow) = (Arc::clone(&gate), Arc::clone(&slow));
            async move {
                // Blocks the handler's thread, as synchronous code in a handler does.
                gate.wait();
                slow.record(batch);
                Ok(())
            }
        })
    };
    let _slow = store.stream_all(blocking).unwrap();
    let _fast = store.stream_all(fast.handler()).unwrap();
    for _ in 0..5 {
        store.append(numbered("a", 1)).unwrap();
    }
    assert_eq!(shapes(&fast.wait_for_sequence(5)).len(), 5);
    assert!(slow.batches().is_empty());
    gate.open();
    assert_eq!(
        shapes(&slow.wait_for_sequence(5)),
        (1..=5).map(|n| vec![n]).collect::<Vec<_>>()
    );
}

pub fn handler_error_keeps_a_live_stream_subscribed<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let handler = {
        let deliveries = Arc::clone(&deliveries);
        HandleStream::new(move |batch| {
            let fail = batch[0].sequence_number == 1;
            deliveries.record(batch);
            async move {
                if fail {
                    Err(StreamHandlerError::new("first batch refused"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let _stream = store.stream_all(handler).unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(
        shapes(&deliveries.wait_for_sequence(2)),
        vec![vec![1], vec![2]]
    );
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        2
    );
}

pub fn handler_panic_keeps_a_live_stream_subscribed_and_spares_other_streams<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let panicking = Deliveries::new();
    let healthy = Deliveries::new();
    let handler = {
        let panicking = Arc::clone(&panicking);
        HandleStream::new(move |batch| {
            let panicking = Arc::clone(&panicking);
            async move {
                let first = batch[0].sequence_number;
                panicking.record(batch);
                assert!(first != 1, "handler panics on purpose for batch {first}");
                Ok(())
            }
        })
    };
    let _panicking = store.stream_all(handler).unwrap();
    let _healthy = store.stream_all(healthy.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(
        shapes(&panicking.wait_for_sequence(2)),
        vec![vec![1], vec![2]]
    );
    assert_eq!(
        shapes(&healthy.wait_for_sequence(2)),
        vec![vec![1], vec![2]]
    );
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        2
    );
}

pub fn unsubscribe_stops_future_deliveries<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let stopped = Deliveries::new();
    let marker = Deliveries::new();
    let stream = store.stream_all(stopped.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    stopped.wait_for_sequence(1);
    stream.unsubscribe();
    stream.unsubscribe();
    let _marker = store.stream_all(marker.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    marker.wait_for_sequence(2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(shapes(&stopped.batches()), vec![vec![1]]);
}

pub fn dropping_the_event_stream_unsubscribes<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let dropped = Deliveries::new();
    let marker = Deliveries::new();
    let stream = store
        .stream_to(&EventQuery::for_event_types(["a"]), dropped.handler())
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    dropped.wait_for_sequence(1);
    drop(stream);
    let _marker = store.stream_all(marker.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    marker.wait_for_sequence(2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(shapes(&dropped.batches()), vec![vec![1]]);
}

pub fn unsubscribing_from_inside_the_own_handler_does_not_deadlock<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let own: Arc<Mutex<Option<EventStream>>> = Arc::new(Mutex::new(None));
    let deliveries = Deliveries::new();
    let marker = Deliveries::new();
    let handler = {
        let (own, deliveries) = (Arc::clone(&own), Arc::clone(&deliveries));
        HandleStream::new(move |batch| {
            if let Some(stream) = own.lock().unwrap().take() {
                stream.unsubscribe();
                drop(stream);
            }
            deliveries.record(batch);
            async { Ok(()) }
        })
    };
    let stream = store.stream_all(handler).unwrap();
    *own.lock().unwrap() = Some(stream);
    store.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(1);
    let _marker = store.stream_all(marker.handler()).unwrap();
    store.append(numbered("a", 1)).unwrap();
    marker.wait_for_sequence(2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(shapes(&deliveries.batches()), vec![vec![1]]);
}

pub fn stream_ids_are_distinct<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let streams = [
        store.stream_all(deliveries.handler()).unwrap(),
        store
            .stream_to(&EventQuery::all(), deliveries.handler())
            .unwrap(),
        store
            .stream_all_durable(&factstr::DurableStream::new("ids"), deliveries.handler())
            .unwrap(),
    ];
    let mut ids: Vec<u64> = streams.iter().map(EventStream::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

pub fn lagging_stream_catches_up_without_loss<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let gate = Gate::new();
    let all = Deliveries::new();
    let only_a = Deliveries::new();
    let blocked = |deliveries: &Arc<Deliveries>| {
        let (gate, deliveries) = (Arc::clone(&gate), Arc::clone(deliveries));
        HandleStream::new(move |batch| {
            let (gate, deliveries) = (Arc::clone(&gate), Arc::clone(&deliveries));
            async move {
                gate.wait();
                deliveries.record(batch);
                Ok(())
            }
        })
    };
    let _all = store.stream_all(blocked(&all)).unwrap();
    let _only_a = store
        .stream_to(&EventQuery::for_event_types(["a"]), blocked(&only_a))
        .unwrap();
    let batch_size = 400;
    let batch_count = (MAX_QUEUED_EVENTS / batch_size) * 2 + 3;
    for index in 0..batch_count {
        let event_type = if index % 2 == 0 { "a" } else { "b" };
        let mut batch = numbered(event_type, batch_size - 1);
        batch.push(event("a", json!({ "batch": index })));
        store.append(batch).unwrap();
    }
    gate.open();
    let total = (batch_size * batch_count) as u64;
    let batches = all.wait_for_sequence(total);
    assert_eq!(batches.len(), batch_count);
    assert!(batches.iter().all(|batch| batch.len() == batch_size));
    assert_eq!(
        sequence_numbers(&batches.concat()),
        (1..=total).collect::<Vec<_>>()
    );

    let batches = only_a.wait_for_sequence(total);
    assert_eq!(batches.len(), batch_count);
    for (index, batch) in batches.iter().enumerate() {
        let expected = if index % 2 == 0 { batch_size } else { 1 };
        assert_eq!(batch.len(), expected, "batch {index}");
        assert!(batch.iter().all(|record| record.event_type == "a"));
    }
    let delivered = sequence_numbers(&batches.concat());
    assert!(delivered.windows(2).all(|pair| pair[0] < pair[1]));
}
