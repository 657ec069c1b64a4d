//! `tail` prints what other processes commit; `streams reset` makes a
//! durable stream replay from the new cursor, and is refused while the
//! stream runs; `streams delete` removes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factstr::{DurableStream, EventQuery, EventStore, HandleStream};
use factstr_sqlite::SqliteStore;
use serde_json::Value;
use support::*;

#[test]
fn tail_prints_facts_other_processes_append() {
    let folder = tempfile::tempdir().unwrap();
    for url in [
        sqlite_url(&folder.path().join("store.db")),
        new_postgres_url(),
    ] {
        ok(&["append", &url, "--type", "before"]);
        ok(&["append", &url, "--type", "seen", "--payload", r#"{"n":0}"#]);
        let mut child = factstr()
            .args(["tail", &url, "--type", "seen", "--from", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next =
            || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
        // History from --from first.
        let first = next();
        assert_eq!(first["sequence_number"], 2, "{first}");
        // Then what other processes commit, filtered.
        ok(&["append", &url, "--type", "ignored"]);
        ok(&["append", &url, "--type", "seen", "--payload", r#"{"n":1}"#]);
        let appended = "{\"event_type\":\"seen\",\"payload\":{\"n\":2}}\n\
                        {\"event_type\":\"seen\",\"payload\":{\"n\":3}}\n";
        assert!(run_with_input(&["append", &url], appended).success);
        for (sequence_number, n) in [(4, 1), (5, 2), (6, 3)] {
            let fact = next();
            assert_eq!(fact["sequence_number"], sequence_number, "{fact}");
            assert_eq!(fact["event_type"], "seen");
            assert_eq!(fact["payload"]["n"], n);
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Runs durable stream `name` on `store` until it handled `through`;
/// returns the sequence numbers it handled.
fn run_durable(store: &SqliteStore, name: &str, through: u64) -> Vec<u64> {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&handled);
    let stream = store
        .stream_all_durable(
            &DurableStream::new(name),
            HandleStream::new(move |batch| {
                let seen = Arc::clone(&seen);
                async move {
                    let mut seen = seen.lock().unwrap();
                    seen.extend(batch.iter().map(|record| record.sequence_number));
                    Ok(())
                }
            }),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.lock().unwrap().last() != Some(&through) {
        assert!(
            Instant::now() < deadline,
            "the stream did not reach {through}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.unsubscribe();
    handled.lock().unwrap().clone()
}

#[test]
fn streams_reset_makes_a_durable_stream_replay_from_the_new_cursor() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("store.db");
    let url = sqlite_url(&path);
    {
        let store = SqliteStore::open(&path).unwrap();
        for index in 0..10 {
            store
                .append(vec![factstr::NewEvent::new(
                    "a",
                    serde_json::json!({"i": index}),
                )])
                .unwrap();
        }
        assert_eq!(
            run_durable(&store, "projection", 10),
            (1..=10).collect::<Vec<_>>()
        );
    }
    let listed = ok(&["streams", &url]);
    assert!(listed.contains("projection"), "{listed}");
    let row = listed
        .lines()
        .find(|line| line.starts_with("projection"))
        .unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..4], ["10", "0", "no"], "{row}");

    let moved = ok(&["streams", "reset", &url, "projection", "--to", "6"]);
    assert!(moved.contains("cursor 10 -> 6"), "{moved}");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(run_durable(&store, "projection", 10), vec![7, 8, 9, 10]);

    // While the stream runs (here, in this process), reset and delete are
    // refused and change nothing.
    let running = store
        .stream_all_durable(
            &DurableStream::new("projection"),
            HandleStream::new(|_| async { Ok(()) }),
        )
        .unwrap();
    let message = fails(&["streams", "reset", &url, "projection", "--to", "0"]);
    assert!(message.contains("already active"), "{message}");
    let message = fails(&["streams", "delete", &url, "projection"]);
    assert!(message.contains("already active"), "{message}");
    let listed = ok(&["streams", &url]);
    let row = listed
        .lines()
        .find(|line| line.starts_with("projection"))
        .unwrap();
    assert!(row.contains(" yes "), "{row}");
    running.unsubscribe();
    drop(store);

    let message = fails(&["streams", "reset", &url, "projection", "--to", "11"]);
    assert!(message.contains("beyond the log's head 10"), "{message}");
    let message = fails(&["streams", "reset", &url, "nothing", "--to", "1"]);
    assert!(message.contains("no durable stream `nothing`"), "{message}");

    ok(&["streams", "delete", &url, "projection"]);
    assert!(!ok(&["streams", &url]).contains("projection"));
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        run_durable(&store, "projection", 10),
        (1..=10).collect::<Vec<_>>()
    );
}

#[test]
fn streams_reset_on_postgres_is_refused_while_the_stream_runs() {
    let url = new_postgres_url();
    for _ in 0..5 {
        ok(&["append", &url, "--type", "a"]);
    }
    let store = factstr_postgres::PostgresStore::connect(&postgres_connection_url(&url)).unwrap();
    let running = store
        .stream_to_durable(
            &DurableStream::new("projection"),
            &EventQuery::for_event_types(["a"]),
            HandleStream::new(|_| async { Ok(()) }),
        )
        .unwrap();
    let message = fails(&["streams", "reset", &url, "projection", "--to", "2"]);
    assert!(message.contains("is active"), "{message}");
    running.unsubscribe();
    drop(store);
    let moved = ok(&["streams", "reset", &url, "projection", "--to", "2"]);
    assert!(moved.contains("-> 2"), "{moved}");
    let stats: Value = serde_json::from_str(&ok(&["stats", &url, "--json"])).unwrap();
    assert_eq!(stats["durable_streams"][0]["cursor"], 2);
    assert_eq!(stats["durable_streams"][0]["behind"], 3);
    ok(&["streams", "delete", &url, "projection"]);
    let stats: Value = serde_json::from_str(&ok(&["stats", &url, "--json"])).unwrap();
    assert_eq!(stats["durable_streams"], Value::Array(vec![]));
}
