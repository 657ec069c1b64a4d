//! Appends committed together (group commit) succeed or fail each on its
//! own: rows the database refuses fail only the append they belong to, and
//! input no store can hold is refused before it reaches the database.
//!
//! The tests make the database refuse rows at insert time with a CHECK
//! constraint or a trigger added to their schema's events table.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use factstr::backend::validation::MAX_EVENT_TYPE_BYTES;
use factstr::{EventQuery, EventRecord, EventStore, EventStoreError, NewEvent};
use factstr_conformance::support::{Deliveries, numbered, sequence_numbers};
use serde_json::json;
use support::{database_url, execute, fetch_i64_at, new_schema, store_in};

const GOOD_WRITERS: usize = 8;
const GOOD_APPENDS_PER_WRITER: usize = 200;
const REFUSED_APPENDS: usize = 40;

fn events_table(schema: &str) -> String {
    format!("{schema}.factstr_events")
}

fn expect_refused_by_the_database(result: Result<factstr::AppendResult, EventStoreError>) {
    match result {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(message.contains("refused"), "{message}");
            assert!(message.contains("no_refused_events"), "{message}");
        }
        other => panic!("expected the database to refuse the append, got {other:?}"),
    }
}

#[test]
fn a_row_the_database_refuses_fails_only_its_own_append_while_eight_threads_append() {
    let schema = new_schema();
    let store = Arc::new(store_in(&schema));
    execute(format!(
        "ALTER TABLE {} ADD CONSTRAINT no_refused_events CHECK (event_type <> 'refused')",
        events_table(&schema)
    ));
    let live = Deliveries::new();
    let _live = store.stream_all(live.handler()).unwrap();

    let start = Arc::new(Barrier::new(GOOD_WRITERS + 1));
    let good: Vec<_> = (0..GOOD_WRITERS)
        .map(|writer| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                (0..GOOD_APPENDS_PER_WRITER)
                    .map(|round| {
                        let event =
                            NewEvent::new("good", json!({"writer": writer, "round": round}));
                        store.append(vec![event])
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let refused = {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        thread::spawn(move || {
            start.wait();
            (0..REFUSED_APPENDS)
                .map(|_| {
                    // A good event in the same batch: the batch fails whole.
                    store.append(vec![
                        NewEvent::new("good-but-batched-with-refused", json!({})),
                        NewEvent::new("refused", json!({})),
                    ])
                })
                .collect::<Vec<_>>()
        })
    };

    let mut failed_good = Vec::new();
    for writer in good {
        for result in writer.join().unwrap() {
            if let Err(error) = result {
                failed_good.push(error);
            }
        }
    }
    let refused_results = refused.join().unwrap();
    assert!(
        failed_good.is_empty(),
        "{} of {} good appends failed, for example: {}",
        failed_good.len(),
        GOOD_WRITERS * GOOD_APPENDS_PER_WRITER,
        failed_good[0]
    );
    for result in refused_results {
        expect_refused_by_the_database(result);
    }

    // Exactly the good appends are stored, gapless, and streams saw them.
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = (GOOD_WRITERS * GOOD_APPENDS_PER_WRITER) as u64;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
    assert!(records.iter().all(|record| record.event_type == "good"));
    let delivered: Vec<EventRecord> = live.wait_for_sequence(total).concat();
    assert_eq!(delivered, records);
}

#[test]
fn appends_grouped_with_a_refused_append_are_decided_as_if_it_had_not_been_made() {
    let schema = new_schema();
    let store = Arc::new(store_in(&schema));
    let events = events_table(&schema);
    execute(format!(
        "ALTER TABLE {events} ADD CONSTRAINT no_refused_events CHECK (event_type <> 'refused');
         CREATE FUNCTION {schema}.slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.event_type = 'slow' THEN PERFORM pg_sleep(0.5); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_insert BEFORE INSERT ON {events}
             FOR EACH ROW EXECUTE FUNCTION {schema}.slow_insert();"
    ));

    // While the writer inserts the slow event, a conflicting conditional
    // append, a refused append and then a conditional append on the refused
    // append's type queue up, and are committed together in the next group.
    let slow = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.append(vec![NewEvent::new("slow", json!({}))]))
    };
    thread::sleep(Duration::from_millis(150));
    let conflicting = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            store.append_if(
                vec![NewEvent::new("never", json!({}))],
                &EventQuery::all(),
                Some(7),
            )
        })
    };
    thread::sleep(Duration::from_millis(150));
    let refused = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.append(vec![NewEvent::new("refused", json!({}))]))
    };
    thread::sleep(Duration::from_millis(150));
    let conditional = store.append_if(
        vec![NewEvent::new("after-refused", json!({}))],
        &EventQuery::for_event_types(["refused"]),
        None,
    );

    assert_eq!(slow.join().unwrap().unwrap().first_sequence_number, 1);
    assert!(matches!(
        conflicting.join().unwrap(),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(7),
            actual: Some(1)
        })
    ));
    expect_refused_by_the_database(refused.join().unwrap());
    assert_eq!(conditional.unwrap().first_sequence_number, 2);
    let stored: Vec<String> = store
        .query(&EventQuery::all())
        .unwrap()
        .event_records
        .into_iter()
        .map(|record| record.event_type)
        .collect();
    assert_eq!(stored, ["slow", "after-refused"]);
}

#[test]
fn an_event_type_of_four_kilobytes_is_invalid_input_and_never_reaches_the_database() {
    let schema = new_schema();
    let store = store_in(&schema);
    // Counts the rows the database was asked to insert: sequences are not
    // transactional, so an insert that fails is counted too.
    execute(format!(
        "CREATE SEQUENCE {schema}.insert_attempts;
         CREATE FUNCTION {schema}.count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM nextval('{schema}.insert_attempts'); RETURN NEW; END $$;
         CREATE TRIGGER count_insert BEFORE INSERT ON {events}
             FOR EACH ROW EXECUTE FUNCTION {schema}.count_insert();",
        events = events_table(&schema)
    ));
    let attempts = || {
        fetch_i64_at(
            database_url(),
            format!(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END \
                 FROM {schema}.insert_attempts"
            ),
        )
    };

    let long_type = "t".repeat(4 * 1024);
    assert!(long_type.len() > MAX_EVENT_TYPE_BYTES);
    for result in [
        store.append(vec![NewEvent::new(long_type.clone(), json!({}))]),
        store.append(vec![
            NewEvent::new("short", json!({})),
            NewEvent::new(long_type.clone(), json!({})),
        ]),
        store.append_if(
            vec![NewEvent::new(long_type.clone(), json!({}))],
            &EventQuery::all(),
            None,
        ),
    ] {
        match result {
            Err(EventStoreError::InvalidInput { message }) => {
                assert!(
                    message.contains("1024") || message.contains("1,024"),
                    "{message}"
                );
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(attempts(), 0);

    // The counter counts: an accepted append reaches it.
    store.append(numbered("a", 2)).unwrap();
    assert_eq!(attempts(), 2);
}

/// A lone append after the writer's own commit takes one statement that
/// only applies while the log's head is the one the writer saw: appends of
/// another store on the same log in between, and rows the database refuses,
/// send it through the transaction, which numbers and refuses as always.
#[test]
fn lone_appends_of_two_stores_on_one_log_and_a_refused_one_keep_the_log_gapless() {
    let schema = new_schema();
    let here = store_in(&schema);
    let there = store_in(&schema);
    execute(format!(
        "ALTER TABLE {} ADD CONSTRAINT no_refused_events CHECK (event_type <> 'refused')",
        events_table(&schema)
    ));
    let mut expected_first = 1;
    for round in 0..10 {
        for (store, size) in [(&here, 1), (&here, 2), (&there, 1)] {
            let result = store.append(numbered("good", size)).unwrap();
            assert_eq!(
                result.first_sequence_number, expected_first,
                "round {round}"
            );
            assert_eq!(
                result.last_sequence_number,
                expected_first + size as u64 - 1
            );
            expected_first += size as u64;
        }
        expect_refused_by_the_database(
            here.append(vec![NewEvent::new("refused", json!({"round": round}))]),
        );
    }
    let records = here.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(
        sequence_numbers(&records),
        (1..expected_first).collect::<Vec<_>>()
    );
    assert!(records.iter().all(|record| record.event_type == "good"));
}
