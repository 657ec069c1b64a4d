//! The server stops, restarts and crashes under running stores.
//!
//! Each test runs its own server (`support::server::PrivateServer`), so
//! stopping or killing it never fails a test running against the shared
//! throwaway server, in this binary or another one.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factstr::{
    AppendResult, DurableStream, EventQuery, EventRecord, EventStore, EventStoreError,
    HandleStream, NewEvent, StreamStopReason,
};
use factstr_conformance::support::{Deliveries, Gate, eventually, numbered, sequence_numbers};
use factstr_postgres::PostgresStore;
use serde_json::json;
use support::server::PrivateServer;
use support::test_options;

fn expect_backend_failure<T: std::fmt::Debug>(what: &str, result: Result<T, EventStoreError>) {
    assert!(
        matches!(result, Err(EventStoreError::BackendFailure { .. })),
        "{what} while the server is down: {result:?}"
    );
}

fn shapes(batches: &[Vec<factstr::EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

#[test]
fn streams_resume_without_loss_or_duplicates_after_the_server_restarts() {
    let mut server = PrivateServer::start();
    let schema = server.new_schema("restarted");
    let options = test_options().connect_timeout(Duration::from_secs(1));
    let store = server.store_in(&schema, options.clone());
    let live = Deliveries::new();
    let durable = Deliveries::new();
    let durable_stream = DurableStream::new("survives-restart");
    let _live = store.stream_all(live.handler()).unwrap();
    let _durable = store
        .stream_to_durable(
            &durable_stream,
            &EventQuery::for_event_types(["a", "b"]),
            durable.handler(),
        )
        .unwrap();
    let contested_here = Deliveries::new();
    let contested = DurableStream::new("contested");
    let _contested = store
        .stream_all_durable(&contested, contested_here.handler())
        .unwrap();
    for size in [1, 2, 3] {
        store.append(numbered("a", size)).unwrap();
    }
    live.wait_for_sequence(6);
    durable.wait_for_sequence(6);
    contested_here.wait_for_sequence(6);

    {
        server.stop();
        expect_backend_failure("append", store.append(numbered("a", 1)));
        expect_backend_failure(
            "append_if",
            store.append_if(numbered("a", 1), &EventQuery::all(), Some(6)),
        );
        expect_backend_failure("query", store.query(&EventQuery::all()));
        expect_backend_failure(
            "durable registration",
            store.stream_all_durable(&DurableStream::new("while-down"), live.handler()),
        );
        server.start_again();
    }

    // The restart ended the session holding `contested`'s lock, and another
    // store (as another process would) takes the name before this store
    // delivers anything again.
    let contender = server.store_in(&schema, options.clone());
    let contested_there = Deliveries::new();
    let _taken_over = contender
        .stream_all_durable(&contested, contested_there.handler())
        .unwrap();

    // The same store works again, without being reopened.
    let mut after_restart = None;
    eventually("an append after the restart", || {
        after_restart = store.append(numbered("b", 2)).ok();
        after_restart.is_some()
    });
    assert_eq!(after_restart.unwrap().first_sequence_number, 7);
    store
        .append_if(numbered("a", 1), &EventQuery::all(), Some(8))
        .unwrap();
    assert_eq!(
        sequence_numbers(&store.query(&EventQuery::all()).unwrap().event_records),
        (1..=9).collect::<Vec<_>>()
    );

    let expected = vec![vec![1], vec![2, 3], vec![4, 5, 6], vec![7, 8], vec![9]];
    assert_eq!(shapes(&live.wait_for_sequence(9)), expected);
    assert_eq!(shapes(&durable.wait_for_sequence(9)), expected);

    // Only the process holding the lock runs `contested`: this store's
    // stream stopped when it found the lock taken, before its handler saw
    // a batch after the restart.
    contested_there.wait_for_sequence(9);
    eventually("this store's `contested` stream stopping", || {
        match store.stream_all_durable(&contested, contested_here.handler()) {
            Err(EventStoreError::BackendFailure { message }) => message.contains("another process"),
            other => panic!("expected BackendFailure, got {other:?}"),
        }
    });
    assert_eq!(
        sequence_numbers(&contested_here.batches().concat()),
        (1..=6).collect::<Vec<_>>()
    );
    drop(contender);

    // The durable cursor kept up: a new store resumes after 9.
    drop(store);
    let reopened = server.store_in(&schema, options);
    reopened.append(numbered("b", 1)).unwrap();
    let resumed = Deliveries::new();
    let _resumed = reopened
        .stream_to_durable(
            &durable_stream,
            &EventQuery::for_event_types(["a", "b"]),
            resumed.handler(),
        )
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![10]]);
}

/// How long a durable stream's claim is trusted without asking the server
/// (`CLAIM_CHECK_INTERVAL` in `durable.rs`), plus a margin: waiting this long
/// makes the next handler call check the claim.
const CLAIM_TRUSTED_FOR: Duration = Duration::from_millis(1_200);

/// A durable stream that records each batch in `deliveries` and holds its
/// handler at the batch starting at 1 until `gate` opens.
fn held_at_first_batch(
    store: &PostgresStore,
    name: &str,
    deliveries: &Arc<Deliveries>,
    gate: &Arc<Gate>,
) -> factstr::EventStream {
    let (deliveries, gate) = (Arc::clone(deliveries), Arc::clone(gate));
    let handler = HandleStream::new(move |batch: Vec<EventRecord>| {
        let first = batch[0].sequence_number;
        deliveries.record(batch);
        if first == 1 {
            gate.wait();
        }
        async { Ok(()) }
    });
    store
        .stream_all_durable(&DurableStream::new(name), handler)
        .unwrap()
}

fn expect_stopped_before_the_unconfirmed_batch(stream: &factstr::EventStream) {
    match stream.stop_reason() {
        Some(StreamStopReason::HandlerFailed {
            first_sequence_number: 2,
            message,
        }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected HandlerFailed at 2, got {other:?}"),
    }
}

#[test]
fn durable_streams_stopped_during_an_outage_stop_and_register_again_after_the_restart() {
    let mut server = PrivateServer::start();
    let schema = server.new_schema("stopped_while_down");
    let options = test_options().connect_timeout(Duration::from_secs(1));
    let store = server.store_in(&schema, options.clone());
    let closed_store = server.store_in(&schema, options);
    let first_batch_handled = Gate::new();
    let (unsubscribed, closed) = (Deliveries::new(), Deliveries::new());
    let unsubscribed_stream =
        held_at_first_batch(&store, "unsubscribed", &unsubscribed, &first_batch_handled);
    let closed_stream = held_at_first_batch(&closed_store, "closed", &closed, &first_batch_handled);
    store.append(numbered("a", 1)).unwrap();
    unsubscribed.wait_for_sequence(1);
    closed.wait_for_sequence(1);
    // Batch 2 is committed and queued while the handlers are still busy
    // with batch 1; its delivery needs the claims confirmed, with the
    // server down.
    store.append(numbered("a", 1)).unwrap();
    // Registering a live stream publishes what was committed before it: the
    // other store's stream has batch 2 queued too.
    drop(
        closed_store
            .stream_all(Deliveries::new().handler())
            .unwrap(),
    );
    server.stop();
    std::thread::sleep(CLAIM_TRUSTED_FOR);
    first_batch_handled.open();
    unsubscribed_stream.unsubscribe();
    drop(closed_store);

    // Closing waited for its stream, which stopped without the server.
    assert!(!closed_stream.is_running());
    expect_stopped_before_the_unconfirmed_batch(&closed_stream);
    eventually(
        "the unsubscribed stream stopping while the server is down",
        || !unsubscribed_stream.is_running(),
    );
    expect_stopped_before_the_unconfirmed_batch(&unsubscribed_stream);
    assert_eq!(shapes(&unsubscribed.batches()), vec![vec![1]]);
    assert_eq!(shapes(&closed.batches()), vec![vec![1]]);
    expect_backend_failure(
        "registering the name again",
        store.stream_all_durable(&DurableStream::new("unsubscribed"), unsubscribed.handler()),
    );

    server.start_again();
    let resumed = Deliveries::new();
    let _resumed = store
        .stream_all_durable(&DurableStream::new("unsubscribed"), resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![2]]);
    // The closed store could not write the cursor of batch 1 while the
    // server was down: batch 1 is delivered again, never skipped.
    let resumed = Deliveries::new();
    let _resumed = store
        .stream_all_durable(&DurableStream::new("closed"), resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![1], vec![2]]);
}

/// One append of a fault test's appender: its tag, and how it ended.
struct Attempt {
    tag: String,
    /// The [`FAULT_PHASE`] when the append was made.
    phase_at_start: u8,
    /// The [`FAULT_PHASE`] when it returned.
    phase_at_end: u8,
    result: Result<AppendResult, EventStoreError>,
}

/// Where the fault test is: 0 before the kill, 1 while the server is down, 2
/// after the restart.
static FAULT_PHASE: AtomicU8 = AtomicU8::new(0);

/// Appends batches of 1 to 3 events of types `a` and `b`, each event tagged
/// with its batch, its index and the batch size, until `stop`.
fn append_until_stopped(
    store: &PostgresStore,
    writer: usize,
    stop: &AtomicBool,
    attempts: &Mutex<Vec<Attempt>>,
) {
    for round in 0_usize.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let tag = format!("{writer}-{round}");
        let size = 1 + (round + writer) % 3;
        let events = (0..size)
            .map(|index| {
                let event_type = if (round + index) % 2 == 0 { "a" } else { "b" };
                NewEvent::new(
                    event_type,
                    json!({"batch": tag, "index": index, "size": size}),
                )
            })
            .collect();
        let phase_at_start = FAULT_PHASE.load(Ordering::SeqCst);
        let result = store.append(events);
        let phase_at_end = FAULT_PHASE.load(Ordering::SeqCst);
        let failed = result.is_err();
        attempts.lock().unwrap().push(Attempt {
            tag,
            phase_at_start,
            phase_at_end,
            result,
        });
        if failed {
            // The server refuses connections at once while it is down.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The committed batches of a tagged log, in order.
fn committed_batches(records: &[EventRecord]) -> Vec<Vec<EventRecord>> {
    let mut batches = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let size = records[start].payload["size"].as_u64().unwrap() as usize;
        let batch = records[start..start + size].to_vec();
        for (index, record) in batch.iter().enumerate() {
            assert_eq!(
                record.payload["batch"], batch[0].payload["batch"],
                "a batch is not whole: {batch:?}"
            );
            assert_eq!(record.payload["index"], json!(index));
        }
        batches.push(batch);
        start += size;
    }
    batches
}

#[test]
fn appends_and_streams_resume_exactly_once_after_the_server_is_killed() {
    const WRITERS: usize = 3;
    let mut server = PrivateServer::start();
    let schema = server.new_schema("killed_server");
    let options = test_options()
        .connect_timeout(Duration::from_secs(1))
        .statement_timeout(Duration::from_secs(5));
    let store = Arc::new(server.store_in(&schema, options.clone()));
    let live = Deliveries::new();
    let durable_all = Deliveries::new();
    let durable_b = Deliveries::new();
    let only_b = EventQuery::for_event_types(["b"]);
    let _live = store.stream_all(live.handler()).unwrap();
    let _durable_all = store
        .stream_all_durable(&DurableStream::new("all"), durable_all.handler())
        .unwrap();
    let _durable_b = store
        .stream_to_durable(&DurableStream::new("only-b"), &only_b, durable_b.handler())
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, stop, attempts) =
                (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&attempts));
            std::thread::spawn(move || append_until_stopped(&store, writer, &stop, &attempts))
        })
        .collect();
    let count = |condition: &dyn Fn(&Attempt) -> bool| {
        attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|attempt| condition(attempt))
            .count()
    };

    eventually("appends before the kill", || {
        count(&|attempt| attempt.result.is_ok()) >= 30
    });
    FAULT_PHASE.store(1, Ordering::SeqCst);
    server.kill();
    // Every append made while the server is down returns, with an error.
    eventually("appends failing while the server is down", || {
        count(&|attempt| attempt.phase_at_start == 1 && attempt.result.is_err()) >= 3 * WRITERS
    });
    FAULT_PHASE.store(2, Ordering::SeqCst);
    server.start_again();
    eventually("appends succeeding after the restart", || {
        count(&|attempt| attempt.phase_at_start == 2 && attempt.result.is_ok()) >= 30
    });
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }

    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    for attempt in &attempts {
        if let Err(error) = &attempt.result {
            // For example "cannot connect to PostgreSQL to append: ... the
            // database system is starting up".
            match error {
                EventStoreError::BackendFailure { message } => {
                    assert!(message.contains("append"), "{message}");
                }
                other => panic!("append {} failed with {other:?}", attempt.tag),
            }
            assert!(
                attempt.phase_at_end >= 1,
                "append {} failed before the kill: {error}",
                attempt.tag
            );
        }
    }

    // The log: gapless, whole batches, each batch once, every acknowledged
    // append where its result said.
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = records.len() as u64;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
    let batches = committed_batches(&records);
    let mut tags = std::collections::BTreeSet::new();
    for batch in &batches {
        let tag = batch[0].payload["batch"].as_str().unwrap().to_owned();
        assert!(tags.insert(tag.clone()), "batch {tag} committed twice");
    }
    for attempt in &attempts {
        if let Ok(result) = &attempt.result {
            let committed = &records
                [(result.first_sequence_number - 1) as usize..result.last_sequence_number as usize];
            assert!(
                committed
                    .iter()
                    .all(|record| record.payload["batch"] == json!(attempt.tag)),
                "acknowledged append {} is not at {result:?}",
                attempt.tag
            );
        }
    }

    // Every stream delivered each committed batch exactly once, in order.
    assert_eq!(live.wait_for_sequence(total), batches);
    assert_eq!(durable_all.wait_for_sequence(total), batches);
    let expected_b: Vec<Vec<EventRecord>> = batches
        .iter()
        .map(|batch| {
            batch
                .iter()
                .filter(|record| record.event_type == "b")
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|batch| !batch.is_empty())
        .collect();
    let last_b = expected_b.last().unwrap().last().unwrap().sequence_number;
    assert_eq!(durable_b.wait_for_sequence(last_b), expected_b);

    // Their cursors reached the end: a new store replays nothing.
    drop(store);
    let reopened = server.store_in(&schema, options);
    let replayed = Deliveries::new();
    let _all = reopened
        .stream_all_durable(&DurableStream::new("all"), replayed.handler())
        .unwrap();
    let _only_b = reopened
        .stream_to_durable(&DurableStream::new("only-b"), &only_b, replayed.handler())
        .unwrap();
    assert_eq!(shapes(&replayed.batches()), Vec::<Vec<u64>>::new());
}
