//! `PostgresStore::bootstrap`: creating the database when missing.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use factstr::{EventQuery, EventStore, EventStoreError};
use factstr_conformance::support::numbered;
use factstr_postgres::{PostgresBootstrapOptions, PostgresStore};
use support::database_url;

fn unique_database_name(purpose: &str) -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "factstr_{purpose}_{}_{}",
        std::process::id(),
        micros % 1_000_000_000
    )
}

fn bootstrap(server_url: &str, database_name: &str) -> Result<PostgresStore, EventStoreError> {
    PostgresStore::bootstrap(PostgresBootstrapOptions {
        server_url: server_url.to_owned(),
        database_name: database_name.to_owned(),
    })
}

#[test]
fn bootstrap_creates_a_missing_database_and_later_connects_to_it() {
    let name = unique_database_name("created");
    // The test URL names another database; bootstrap replaces it.
    let store = bootstrap(&database_url(), &name).unwrap();
    assert_eq!(store.schema(), "public");
    store.append(numbered("a", 2)).unwrap();
    drop(store);

    let again = bootstrap(&database_url(), &name).unwrap();
    let records = again.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), 2);

    let url = database_url();
    let server = &url[..url.rfind('/').unwrap()];
    let direct = PostgresStore::connect(&format!("{server}/{name}")).unwrap();
    assert_eq!(
        direct.query(&EventQuery::all()).unwrap().event_records,
        records
    );
}

#[test]
fn bootstrap_keeps_the_query_parameters_of_the_server_url() {
    let name = unique_database_name("parameters");
    let url = database_url();
    let server = &url[..url.rfind('/').unwrap()];
    // The new database has no such schema: connecting with the kept
    // parameter fails, after the database was created.
    let result = bootstrap(
        &format!("{server}/ignored?options=-csearch_path%3Dno_such_schema"),
        &name,
    );
    match result {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(message.contains("search_path"), "{message}");
        }
        other => panic!("expected BackendFailure, got {other:?}"),
    }
    bootstrap(server, &name).unwrap();
}

#[test]
fn processes_bootstrapping_one_new_database_at_once_all_succeed() {
    let name = unique_database_name("racing");
    let barrier = Arc::new(Barrier::new(4));
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (name, barrier) = (name.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                bootstrap(&database_url(), &name).map(|store| {
                    store.append(numbered("a", 1)).unwrap();
                })
            })
        })
        .collect();
    for racer in racers {
        racer.join().unwrap().unwrap();
    }
    let store = bootstrap(&database_url(), &name).unwrap();
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        4
    );
}

#[test]
fn bad_database_names_are_invalid_input_before_the_server_is_contacted() {
    // Nothing listens on port 1: touching the server would be a BackendFailure.
    let unreachable = "postgres://postgres@127.0.0.1:1/postgres";
    for name in [
        "",
        "1abc",
        "has-dash",
        "has space",
        "quote\"d",
        "semi;colon",
        "ü",
    ] {
        match bootstrap(unreachable, name) {
            Err(EventStoreError::InvalidInput { message }) => {
                assert!(message.contains("[A-Za-z_][A-Za-z0-9_]*"), "{message}");
            }
            other => panic!("{name:?}: expected InvalidInput, got {other:?}"),
        }
    }
    assert!(matches!(
        bootstrap(unreachable, "valid_name"),
        Err(EventStoreError::BackendFailure { .. })
    ));
}
