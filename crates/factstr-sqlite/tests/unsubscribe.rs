//! Unsubscribing a durable stream never waits for the database: its last
//! cursor is written on the stream's own thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use factstr::{DurableStream, EventStore, StreamStopReason};
use factstr_conformance::support::{Deliveries, PATIENCE, numbered};
use factstr_sqlite::{SqliteStore, SqliteStoreOptions};

#[test]
fn unsubscribing_a_durable_stream_returns_while_another_connection_holds_the_write_lock() {
    let folder = common::new_folder();
    let path = common::database_in(&folder);
    let options = SqliteStoreOptions::default().busy_timeout(Duration::from_secs(120));
    let store = SqliteStore::open_with(&path, options).unwrap();
    let deliveries = Deliveries::new();
    let durable = DurableStream::new("projection");
    let stream = store
        .stream_all_durable(&durable, deliveries.handler())
        .unwrap();
    store.append(numbered("a", 1)).unwrap();
    deliveries.wait_for_sequence(1);

    // Another connection takes the write lock, so writing the cursor waits.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let (stopped_tx, stopped_rx) = mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = stopped_tx.send(reason.clone());
    });
    let (returned_tx, returned_rx) = mpsc::channel();
    std::thread::spawn(move || {
        stream.unsubscribe();
        drop(stream);
        let _ = returned_tx.send(());
    });
    returned_rx
        .recv_timeout(PATIENCE)
        .expect("unsubscribe returned while the write lock was held");

    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(
        stopped_rx.recv_timeout(PATIENCE).unwrap(),
        StreamStopReason::Unsubscribed
    );
    drop(store);

    // The cursor was written once the lock was free.
    let store = SqliteStore::open(&path).unwrap();
    store.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(resumed.sequence_numbers(), vec![2]);
}
