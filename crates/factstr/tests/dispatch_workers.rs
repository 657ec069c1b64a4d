//! The dispatcher's shared delivery workers: streams that block their
//! worker, more of them than there are workers, many streams at once, and
//! handlers whose spawned tasks outlive their call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factstr::{DurableStream, EventStore, HandleStream};
use factstr_conformance::support::{Deliveries, Gate, eventually, numbered, sequence_numbers};
use factstr_memory::MemoryStore;

/// A handler that blocks its thread until `gate` opens, as synchronous code
/// in a handler does.
fn blocking(gate: &Arc<Gate>) -> HandleStream {
    let gate = Arc::clone(gate);
    HandleStream::new(move |_batch| {
        gate.wait();
        async { Ok(()) }
    })
}

#[test]
fn more_blocking_streams_than_workers_delay_no_other_stream() {
    let store = MemoryStore::new();
    let gate = Gate::new();
    // More than any pool has workers (at most 4).
    let _blocked: Vec<_> = (0..8)
        .map(|_| store.stream_all(blocking(&gate)).unwrap())
        .collect();
    let fast = Deliveries::new();
    let _fast = store.stream_all(fast.handler()).unwrap();
    for _ in 0..3 {
        store.append(numbered("a", 1)).unwrap();
    }
    assert_eq!(
        sequence_numbers(&fast.wait_for_sequence(3).concat()),
        vec![1, 2, 3]
    );
    gate.open();
}

#[test]
fn many_streams_each_get_every_batch_in_order() {
    let store = MemoryStore::new();
    let streams: Vec<_> = (0..64).map(|_| Deliveries::new()).collect();
    let _subscriptions: Vec<_> = streams
        .iter()
        .map(|deliveries| store.stream_all(deliveries.handler()).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for size in 1..=25 {
                    store.append(numbered("a", size % 3 + 1)).unwrap();
                }
            });
        }
    });
    let total = store
        .query(&factstr::EventQuery::all())
        .unwrap()
        .event_records
        .len() as u64;
    for deliveries in &streams {
        let batches = deliveries.wait_for_sequence(total);
        assert_eq!(
            sequence_numbers(&batches.concat()),
            (1..=total).collect::<Vec<_>>()
        );
        assert_eq!(batches.len(), 100, "one handler call per committed batch");
    }
}

#[test]
fn a_replay_that_blocks_delays_no_live_stream() {
    let store = Arc::new(MemoryStore::new());
    for _ in 0..50 {
        store.append(numbered("a", 10)).unwrap();
    }
    let live = Deliveries::new();
    let _live = store.stream_all(live.handler()).unwrap();
    let gate = Gate::new();
    let replayed = Deliveries::new();
    let handler = {
        let (gate, replayed) = (Arc::clone(&gate), Arc::clone(&replayed));
        HandleStream::new(move |batch| {
            // The second batch of the replay blocks its thread.
            if !replayed.batches().is_empty() {
                gate.wait();
            }
            replayed.record(batch);
            async { Ok(()) }
        })
    };
    let registering = Arc::clone(&store);
    let registration = std::thread::spawn(move || {
        registering
            .stream_all_durable(&DurableStream::new("blocked-replay"), handler)
            .unwrap()
    });
    replayed.wait_for_batches(1);
    store.append(numbered("a", 1)).unwrap();
    assert_eq!(
        sequence_numbers(&live.wait_for_sequence(501).concat()),
        vec![501]
    );
    gate.open();
    let _durable = registration.join().unwrap();
    let replayed = replayed.wait_for_sequence(501);
    assert_eq!(
        sequence_numbers(&replayed.concat()),
        (1..=501).collect::<Vec<_>>()
    );
}

#[test]
fn tasks_a_handler_spawns_keep_running_between_batches() {
    let store = MemoryStore::new();
    let ticks = Arc::new(AtomicU64::new(0));
    let handler = {
        let ticks = Arc::clone(&ticks);
        HandleStream::new(move |_batch| {
            let ticks = Arc::clone(&ticks);
            async move {
                drop(tokio::spawn(async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(1));
                    loop {
                        interval.tick().await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                }));
                Ok(())
            }
        })
    };
    let _stream = store.stream_all(handler).unwrap();
    store.append(numbered("a", 1)).unwrap();
    // No further batch: the task must run on its own.
    eventually("the spawned task ticks without further batches", || {
        ticks.load(Ordering::SeqCst) >= 20
    });
}
