//! Numbers FACTSTR never stores (a negative sequence number, batch end or
//! cursor, written by something else) are reported as corruption, never
//! read as another number.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError};
use factstr_conformance::support::{Deliveries, numbered, sequence_numbers};
use factstr_postgres::PostgresStore;
use support::{execute, new_schema, schema_url, store_in, test_options};

/// The message of a `BackendFailure` reporting `value` as corrupt.
fn expect_corruption<T: std::fmt::Debug>(result: Result<T, EventStoreError>, value: &str) {
    match result {
        Err(EventStoreError::BackendFailure { message }) => assert!(
            message.contains("invalid") && message.contains(value) && message.contains("corrupt"),
            "{message}"
        ),
        other => panic!("expected a BackendFailure reporting {value}, got {other:?}"),
    }
}

#[test]
fn a_negative_stored_cursor_is_reported_as_corruption() {
    let schema = new_schema();
    let durable = DurableStream::new("projection");
    {
        let store = store_in(&schema);
        store.append(numbered("a", 2)).unwrap();
        let handled = Deliveries::new();
        let stream = store
            .stream_all_durable(&durable, handled.handler())
            .unwrap();
        assert_eq!(sequence_numbers(&handled.batches().concat()), vec![1, 2]);
        stream.unsubscribe();
    }
    execute(format!(
        "UPDATE {schema}.factstr_durable_streams SET cursor = -3"
    ));

    let store = store_in(&schema);
    let replayed = Deliveries::new();
    expect_corruption(
        store.stream_all_durable(&durable, replayed.handler()),
        "cursor of durable stream `projection`: -3",
    );
    assert!(replayed.batches().is_empty());

    // The failed registration released the name: repaired, the stream
    // resumes after the repaired cursor.
    execute(format!(
        "UPDATE {schema}.factstr_durable_streams SET cursor = 1"
    ));
    let _stream = store
        .stream_all_durable(&durable, replayed.handler())
        .unwrap();
    assert_eq!(sequence_numbers(&replayed.batches().concat()), vec![2]);
}

#[test]
fn a_negative_stored_sequence_number_is_reported_as_corruption() {
    let schema = new_schema();
    let store = store_in(&schema);
    store.append(numbered("a", 1)).unwrap();
    execute(format!(
        "UPDATE {schema}.factstr_events SET sequence_number = -1, batch_last_sequence_number = -1"
    ));

    let invalid = "sequence number: -1";
    expect_corruption(store.query(&EventQuery::all()), invalid);
    expect_corruption(store.append(numbered("a", 1)), invalid);
    expect_corruption(
        store.append_if(numbered("a", 1), &EventQuery::all(), None),
        invalid,
    );
    drop(store);
    expect_corruption(
        PostgresStore::connect_with(&schema_url(&schema), test_options()),
        invalid,
    );
}

#[test]
fn a_negative_stored_batch_end_is_reported_as_corruption() {
    let schema = new_schema();
    let store = store_in(&schema);
    store.append(numbered("a", 2)).unwrap();
    execute(format!(
        "UPDATE {schema}.factstr_events SET batch_last_sequence_number = -5"
    ));

    let replayed = Deliveries::new();
    expect_corruption(
        store.stream_all_durable(&DurableStream::new("projection"), replayed.handler()),
        "batch end: -5",
    );
    assert!(replayed.batches().is_empty());
}
