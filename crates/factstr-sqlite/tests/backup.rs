//! A backup taken with `VACUUM INTO` while appends go on is a FACTSTR
//! database of its own: a gapless prefix of the log with whole batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use factstr::{DurableStream, EventQuery, EventStore};
use factstr_conformance::support::{Deliveries, numbered, sequence_numbers};
use factstr_sqlite::SqliteStore;

#[test]
fn vacuum_into_while_appending_makes_a_consistent_copy() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let backup = folder.path().join("backup.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store.append(numbered("a", 3)).unwrap();

    let appending = Arc::new(AtomicBool::new(true));
    let appender = {
        let (store, appending) = (Arc::clone(&store), Arc::clone(&appending));
        std::thread::spawn(move || {
            while appending.load(Ordering::Relaxed) {
                store.append(numbered("b", 3)).unwrap();
            }
        })
    };
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    appending.store(false, Ordering::Relaxed);
    appender.join().unwrap();

    let copy = SqliteStore::open(&backup).unwrap();
    let records = copy.query(&EventQuery::all()).unwrap().event_records;
    let copied = records.len() as u64;
    assert!(copied >= 3);
    assert_eq!(sequence_numbers(&records), (1..=copied).collect::<Vec<_>>());
    let original = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records, original[..copied as usize]);
    let replayed = Deliveries::new();
    let _stream = copy
        .stream_all_durable(&DurableStream::new("check"), replayed.handler())
        .unwrap();
    assert!(replayed.batches().iter().all(|batch| batch.len() == 3));
}
