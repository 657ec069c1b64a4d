//! A writer killed with SIGKILL loses nothing it acknowledged, leaves no
//! partial batch and no durable cursor (read from the file) ahead of its
//! handler. The cases that several live processes on one file share with
//! every persistent store are in the conformance suite
//! (`tests/conformance.rs`).
//!
//! The child processes are this test binary again, running only
//! `child_process` with `FACTSTR_SQLITE_TEST_CHILD` naming their role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factstr::{DurableStream, EventQuery, EventStore, HandleStream, NewEvent};
use factstr_conformance::support::{Deliveries, sequence_numbers};
use factstr_sqlite::{SqliteStore, SqliteStoreOptions};
use serde_json::json;

const ROLE: &str = "FACTSTR_SQLITE_TEST_CHILD";
const DATABASE: &str = "FACTSTR_SQLITE_TEST_DATABASE";
const WORKER: &str = "FACTSTR_SQLITE_TEST_WORKER";

const CRASH_ROUNDS: usize = 5;
const BATCH_SIZE: u64 = 5;

/// The entry point of every child; does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::env::var(DATABASE).unwrap();
    let worker: u64 = std::env::var(WORKER).unwrap().parse().unwrap();
    match role.as_str() {
        "crash" => append_until_killed(Path::new(&path), worker),
        other => panic!("unknown child role {other}"),
    }
}

fn open_shared(path: &Path) -> SqliteStore {
    // Generous: under a loaded CI machine four writers may queue for a while.
    SqliteStore::open_with(
        path,
        SqliteStoreOptions::default().busy_timeout(Duration::from_secs(60)),
    )
    .unwrap()
}

fn spawn_child(role: &str, path: &Path, worker: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DATABASE, path)
        .env(WORKER, worker.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Child: runs a durable stream that reports each batch it handles, and
/// appends batches of five until it is killed, reporting each acknowledged
/// range.
fn append_until_killed(path: &Path, round: u64) {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let report = move |line: String| {
        let mut out = out.lock().unwrap();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let store = open_shared(path);
    let handler = {
        let report = report.clone();
        HandleStream::new(move |batch: Vec<factstr::EventRecord>| {
            // Reported before the handler succeeds, so before the cursor moves.
            report(format!(
                "@HANDLED {} {}",
                batch[0].sequence_number,
                batch[batch.len() - 1].sequence_number
            ));
            async { Ok(()) }
        })
    };
    let _stream = store
        .stream_all_durable(&DurableStream::new("crash-watch"), handler)
        .unwrap();
    for batch_number in 0.. {
        let batch = (0..BATCH_SIZE)
            .map(|index| {
                NewEvent::new(
                    "appended",
                    json!({"round": round, "batch": batch_number, "index": index}),
                )
            })
            .collect();
        let result = store.append(batch).unwrap();
        report(format!(
            "@ACK {} {} {round} {batch_number}",
            result.first_sequence_number, result.last_sequence_number
        ));
    }
}

/// A line a crash child printed.
enum Report {
    Acknowledged {
        first: u64,
        last: u64,
        round: u64,
        batch: u64,
    },
    Handled {
        first: u64,
        last: u64,
    },
}

fn parse_report(line: &str) -> Option<Report> {
    // The test harness may print its own text before ours on a line.
    let report = &line[line.find('@')? + 1..];
    let fields: Vec<&str> = report.split_whitespace().collect();
    let number = |index: usize| fields[index].parse::<u64>().unwrap();
    match fields.first() {
        Some(&"ACK") => Some(Report::Acknowledged {
            first: number(1),
            last: number(2),
            round: number(3),
            batch: number(4),
        }),
        Some(&"HANDLED") => Some(Report::Handled {
            first: number(1),
            last: number(2),
        }),
        _ => None,
    }
}

fn stored_cursor(path: &Path, name: &str) -> u64 {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .query_row(
            "SELECT cursor FROM factstr_durable_streams WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .map_or(0, |cursor| cursor as u64)
}

#[cfg(unix)]
#[test]
fn a_writer_killed_mid_append_loses_nothing_acknowledged_and_leaves_no_partial_batch() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let mut acknowledged = Vec::new();
    let mut handled_through = 0;
    let mut cursor_before = 0;
    for round in 0..CRASH_ROUNDS {
        let mut child = spawn_child("crash", &path, round as u64);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let acks_before_kill = 8 + 9 * round;
        let mut acks = 0;
        let mut reports = Vec::new();
        let mut transcript = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            transcript.push(line.clone());
            let Some(report) = parse_report(&line) else {
                continue;
            };
            acks += usize::from(matches!(report, Report::Acknowledged { .. }));
            reports.push(report);
            if acks == acks_before_kill {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the child wrote before it died.
        reports.extend(
            lines
                .map_while(Result::ok)
                .filter_map(|line| parse_report(&line)),
        );
        assert!(
            acks >= acks_before_kill,
            "round {round}: the child ended early"
        );

        let mut first_handled = None;
        for report in reports {
            match report {
                Report::Acknowledged {
                    first,
                    last,
                    round,
                    batch,
                } => acknowledged.push((first, last, round, batch)),
                Report::Handled { first, last } => {
                    first_handled.get_or_insert(first);
                    handled_through = handled_through.max(last);
                }
            }
        }
        // The durable stream resumed strictly after the cursor it had stored.
        assert_eq!(
            first_handled,
            Some(cursor_before + 1),
            "round {round}: {transcript:?}"
        );
        let cursor = stored_cursor(&path, "crash-watch");
        assert!(
            cursor <= handled_through,
            "round {round}: cursor {cursor} is ahead of what the handler saw ({handled_through})"
        );
        cursor_before = cursor;
    }

    let store = SqliteStore::open(&path).unwrap();
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = records.len() as u64;
    assert_eq!(
        sequence_numbers(&records),
        (1..=total).collect::<Vec<_>>(),
        "gapless"
    );
    for &(first, last, round, batch) in &acknowledged {
        assert_eq!(last - first + 1, BATCH_SIZE);
        assert!(last <= total, "acknowledged {first}..={last} is missing");
        for record in &records[(first - 1) as usize..last as usize] {
            assert_eq!(record.payload["round"], json!(round));
            assert_eq!(record.payload["batch"], json!(batch));
        }
    }
    // Every stored batch is whole: five events of one append.
    let replayed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("verify"), replayed.handler())
        .unwrap();
    let batches = replayed.batches();
    assert_eq!(batches.concat().len() as u64, total);
    for batch in &batches {
        assert_eq!(batch.len() as u64, BATCH_SIZE, "{batch:?}");
        assert!(batch.iter().all(|record| {
            record.payload["batch"] == batch[0].payload["batch"]
                && record.payload["round"] == batch[0].payload["round"]
        }));
    }
}
