//! Two stores on one file (as two processes would have): live streams see
//! each other's appends, durable stream names are claimed across them, and
//! conditional appends stay atomic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError};
use factstr_conformance::support::{Deliveries, eventually, numbered, sequence_numbers};
use factstr_sqlite::SqliteStore;

#[test]
fn live_streams_see_batches_another_store_committed() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let watching = SqliteStore::open(&path).unwrap();
    let other = SqliteStore::open(&path).unwrap();
    let all = Deliveries::new();
    let only_b = Deliveries::new();
    let _all = watching.stream_all(all.handler()).unwrap();
    let _only_b = watching
        .stream_to(&EventQuery::for_event_types(["b"]), only_b.handler())
        .unwrap();

    other.append(numbered("a", 2)).unwrap();
    other.append(numbered("b", 1)).unwrap();
    other.append(numbered("a", 1)).unwrap();
    all.wait_for_sequence(4);
    watching.append(numbered("b", 2)).unwrap();

    let batches = all.wait_for_sequence(6);
    let shapes: Vec<Vec<u64>> = batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect();
    assert_eq!(shapes, vec![vec![1, 2], vec![3], vec![4], vec![5, 6]]);
    assert_eq!(only_b.wait_for_sequence(6).concat().len(), 3);
    assert_eq!(only_b.sequence_numbers(), vec![3, 5, 6]);
}

#[test]
fn a_durable_stream_runs_in_one_store_of_a_file_at_a_time() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    first.append(numbered("a", 3)).unwrap();
    let durable = DurableStream::new("projection");

    let running = Deliveries::new();
    let stream = first
        .stream_all_durable(&durable, running.handler())
        .unwrap();
    let refused = second.stream_all_durable(&durable, Deliveries::new().handler());
    assert!(
        matches!(refused, Err(EventStoreError::BackendFailure { ref message }) if message.contains("already active")),
        "{refused:?}"
    );

    // The name is free in the file once the stream has stopped (it
    // releases its claim on its own thread after writing its cursor).
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = stopped_tx.send(reason.clone());
    });
    drop(stream);
    assert_eq!(
        stopped_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap(),
        factstr::StreamStopReason::Unsubscribed
    );
    second.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = second
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    // The first store wrote its cursor when the stream closed.
    assert_eq!(resumed.sequence_numbers(), vec![4]);
}

#[test]
fn conditional_appends_through_two_stores_win_each_version_once() {
    const THREADS: usize = 6;
    const WINS_PER_THREAD: usize = 25;
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let stores = [
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::new(SqliteStore::open(&path).unwrap()),
    ];
    let context = EventQuery::for_event_types(["counter-incremented"]);
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = Arc::clone(&stores[thread % 2]);
            let context = context.clone();
            std::thread::spawn(move || {
                for _ in 0..WINS_PER_THREAD {
                    loop {
                        let seen = store.query(&context).unwrap().current_context_version;
                        let event = factstr::NewEvent::new(
                            "counter-incremented",
                            serde_json::json!({"expected": seen}),
                        );
                        match store.append_if(vec![event], &context, seen) {
                            Ok(_) => break,
                            Err(EventStoreError::ConditionalAppendConflict { .. }) => {}
                            Err(error) => panic!("{error}"),
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let records = stores[0].query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), THREADS * WINS_PER_THREAD);
    for record in &records {
        let expected = record.payload["expected"].as_u64().unwrap_or(0);
        assert_eq!(expected, record.sequence_number - 1);
    }
    eventually("both stores agreeing", || {
        stores[1].query(&EventQuery::all()).unwrap().event_records == records
    });
}

/// The POSIX locks this process holds on the file at `path`, as Linux lists
/// them.
#[cfg(target_os = "linux")]
fn locks_held_on(path: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).unwrap().ino();
    let process = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&process.as_str())
                && fields
                    .get(5)
                    .is_some_and(|file| file.ends_with(&format!(":{inode}")))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn opening_a_second_store_on_the_file_keeps_the_locks_of_the_first() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let first = SqliteStore::open(&path).unwrap();
    first.append(numbered("a", 1)).unwrap();
    first.query(&EventQuery::all()).unwrap();
    // A connection in WAL mode keeps a shared lock on the file; another
    // process closing the file's last connection deletes the write-ahead
    // log unless it finds one, and the first store's later commits would
    // go to a deleted file.
    assert!(
        !locks_held_on(&path).is_empty(),
        "the first store holds no lock"
    );
    // Closing any descriptor of the file releases every POSIX lock the
    // process holds on it: opening must not do that.
    let second = SqliteStore::open(&path).unwrap();
    assert!(
        !locks_held_on(&path).is_empty(),
        "opening released the locks"
    );
    drop(second);
    assert!(
        !locks_held_on(&path).is_empty(),
        "closing released the locks"
    );
}
