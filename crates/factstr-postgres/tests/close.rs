//! Dropping the store: from inside tokio runtimes of both flavours (on a
//! worker, and through `spawn_blocking` as the documentation recommends),
//! without a panic, with its streams stopped and the last durable cursors
//! written before the drop returns.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{DurableStream, EventStore, EventStream, StreamStopReason};
use factstr_conformance::support::{Deliveries, numbered};
use factstr_postgres::PostgresStore;
use support::{new_schema, store_in};

const NAME: &str = "dropped-in-a-runtime";

/// A store in a fresh schema with a live and a durable stream that have
/// handled three events.
fn store_with_streams() -> (String, PostgresStore, EventStream, EventStream) {
    let schema = new_schema();
    let store = store_in(&schema);
    let deliveries = Deliveries::new();
    let live = store.stream_all(deliveries.handler()).unwrap();
    let durable = store
        .stream_all_durable(&DurableStream::new(NAME), deliveries.handler())
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    store.append(numbered("a", 2)).unwrap();
    deliveries.wait_for_events(6);
    (schema, store, live, durable)
}

/// Both streams stopped because the store closed, and the durable cursor
/// was written: a new store replays nothing.
fn assert_closed_with_the_cursor_written(schema: &str, live: &EventStream, durable: &EventStream) {
    for stream in [live, durable] {
        assert!(!stream.is_running());
        assert_eq!(stream.stop_reason(), Some(StreamStopReason::StoreClosed));
    }
    let reopened = store_in(schema);
    let replayed = Deliveries::new();
    let _durable = reopened
        .stream_all_durable(&DurableStream::new(NAME), replayed.handler())
        .unwrap();
    assert!(replayed.batches().is_empty(), "{:?}", replayed.batches());
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_store_on_a_current_thread_runtime_writes_the_last_cursor() {
    let (schema, store, live, durable) = store_with_streams();
    drop(store);
    assert_closed_with_the_cursor_written(&schema, &live, &durable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_on_a_multi_thread_runtime_worker_writes_the_last_cursor() {
    let (schema, store, live, durable) = store_with_streams();
    drop(store);
    assert_closed_with_the_cursor_written(&schema, &live, &durable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_through_spawn_blocking_writes_the_last_cursor() {
    let (schema, store, live, durable) = store_with_streams();
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .unwrap();
    assert_closed_with_the_cursor_written(&schema, &live, &durable);
}
