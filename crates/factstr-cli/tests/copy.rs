//! `copy` from SQLite to PostgreSQL keeps every fact, number, time, batch
//! and cursor; killed midway and run again, it continues without a gap or
//! a duplicate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use factstr::backend::StoreOperations;
use factstr::{EventQuery, EventStore};
use factstr_postgres::PostgresStore;
use support::*;

/// The log copied: the size the command is meant for.
const FACTS: usize = 1_000_000;

fn head(store: &dyn EventStore) -> u64 {
    let probe = EventQuery::all().with_min_sequence_number(i64::MAX as u64);
    store
        .query_page(&probe, 1)
        .unwrap()
        .current_context_version
        .unwrap_or(0)
}

#[test]
fn a_copy_killed_midway_continues_where_it_stopped() {
    let folder = tempfile::tempdir().unwrap();
    let built = Instant::now();
    let source = sqlite_fixture(&folder.path().join("source.db"), FACTS);
    eprintln!("fixture of {FACTS} facts built in {:?}", built.elapsed());
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let target_url = new_postgres_url();
    // Creates the tables, so the test can watch the head.
    ok(&["stats", &target_url]);
    let target = PostgresStore::connect(&postgres_connection_url(&target_url)).unwrap();

    let copying = Instant::now();
    let mut child = factstr()
        .args(["copy", &source_url, &target_url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stop_after = FACTS as u64 / 3;
    let deadline = Instant::now() + Duration::from_secs(600);
    while head(&target) < stop_after {
        assert!(child.try_wait().unwrap().is_none(), "the copy ended early");
        assert!(Instant::now() < deadline, "the copy made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stopped_at = head(&target);
    assert!(
        stopped_at < FACTS as u64,
        "the copy finished before it was killed"
    );
    // Streams are copied after the facts: none yet.
    assert!(target.durable_streams().unwrap().is_empty());

    let resumed = ok(&["copy", &source_url, &target_url]);
    eprintln!("copy with one interruption took {:?}", copying.elapsed());
    assert!(
        resumed.starts_with(&format!(
            "copied {} facts ({}..={FACTS})",
            FACTS as u64 - stopped_at,
            stopped_at + 1
        )),
        "{resumed}"
    );
    assert_same_log(&source, &target);
    assert_eq!(
        ok(&["stats", &source_url, "--json"]),
        ok(&["stats", &target_url, "--json"])
    );

    // Nothing new: a third run copies nothing and changes nothing.
    let again = ok(&["copy", &source_url, &target_url]);
    assert!(again.starts_with("copied 0 facts"), "{again}");
    assert_eq!(head(&target), FACTS as u64);
    // A million facts take about 700 MB on the server.
    drop(target);
    drop_postgres_schema(&target_url);
}

#[test]
fn a_copy_refuses_a_destination_holding_another_log() {
    let folder = tempfile::tempdir().unwrap();
    sqlite_fixture(&folder.path().join("source.db"), 20);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let target_url = new_postgres_url();
    ok(&["append", &target_url, "--type", "elsewhere"]);
    let message = fails(&["copy", &source_url, &target_url]);
    assert!(message.contains("holds another log"), "{message}");
    let facts = ok(&["query", &target_url, "--json"]);
    assert_eq!(facts.lines().count(), 1);
}

#[test]
fn copy_follow_copies_new_commits_until_stopped() {
    let folder = tempfile::tempdir().unwrap();
    sqlite_fixture(&folder.path().join("source.db"), 20);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let target_url = sqlite_url(&folder.path().join("target.db"));
    let mut child = factstr()
        .args(["copy", "--follow", &source_url, &target_url])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ok(&[
        "append",
        &source_url,
        "--type",
        "late",
        "--payload",
        r#"{"n":1}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::path::Path::new(&folder.path().join("target.db")).exists() {
            let late = ok(&["query", &target_url, "--type", "late", "--json"]);
            if late.lines().count() == 1 {
                assert!(late.contains(r#""sequence_number":21"#), "{late}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the new commit was not copied");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
