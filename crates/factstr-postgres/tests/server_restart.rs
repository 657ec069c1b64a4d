//! The server restarts under a store with a live and a durable stream.
//!
//! The only test in this binary: it stops the shared throwaway server
//! (cargo runs test binaries one after another, so no other test sees it
//! down). `scripts/postgres start` exports how to control the server.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError};
use factstr_conformance::support::{Deliveries, eventually, numbered, sequence_numbers};
use factstr_postgres::PostgresStore;
use support::{new_schema, schema_url, test_options};

struct Server {
    pg_ctl: String,
    data: String,
    run_as: String,
}

impl Server {
    fn from_environment() -> Self {
        let variable = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the tests through scripts/test (it starts the server)"
                )
            })
        };
        Self {
            pg_ctl: variable("FACTSTR_TEST_PG_CTL"),
            data: variable("FACTSTR_TEST_PG_DATA"),
            run_as: std::env::var("FACTSTR_TEST_PG_RUNAS").unwrap_or_default(),
        }
    }

    fn pg_ctl(&self, arguments: &[&str]) {
        let mut command = if self.run_as.is_empty() {
            Command::new(&self.pg_ctl)
        } else {
            let mut command = Command::new("runuser");
            command.args(["-u", &self.run_as, "--", &self.pg_ctl]);
            command
        };
        let log = format!("{}/../server.log", self.data);
        let status = command
            .args(["-D", &self.data, "-l", &log, "-w", "-t", "60"])
            .args(arguments)
            .current_dir("/tmp")
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {arguments:?} failed: {status}");
    }
}

/// Stops the server and starts it again when dropped, even if the test
/// fails in between.
struct Outage<'a> {
    server: &'a Server,
}

impl<'a> Outage<'a> {
    fn begin(server: &'a Server) -> Self {
        server.pg_ctl(&["-m", "fast", "stop"]);
        Self { server }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        self.server.pg_ctl(&["start"]);
    }
}

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
    let server = Server::from_environment();
    let schema = new_schema();
    let options = test_options().connect_timeout(Duration::from_secs(1));
    let store = PostgresStore::connect_with(&schema_url(&schema), options.clone()).unwrap();
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
        let _outage = Outage::begin(&server);
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
    }

    // The restart ended the session holding `contested`'s lock, and another
    // store (as another process would) takes the name before this store
    // delivers anything again.
    let contender = PostgresStore::connect_with(&schema_url(&schema), options.clone()).unwrap();
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
    let reopened = PostgresStore::connect_with(&schema_url(&schema), options).unwrap();
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
