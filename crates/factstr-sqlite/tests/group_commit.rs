//! Group commit under many threads: conditional appends on overlapping and
//! disjoint contexts, each checked in order against what precedes it, so no
//! context version is won twice and every win was decided on the version
//! current at its commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use factstr::{EventFilter, EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_conformance::support::sequence_numbers;
use serde_json::json;

const THREADS: usize = 12;
const ATTEMPTS_PER_THREAD: usize = 60;

/// The counter a thread uses in an attempt: the one shared counter, a
/// counter shared with its neighbour, or its own counter.
fn counter_of(thread: usize, attempt: usize) -> String {
    match attempt % 3 {
        0 => "shared".to_owned(),
        1 => format!("pair-{}", thread / 2),
        _ => format!("own-{thread}"),
    }
}

/// The context of one counter: its increments.
fn context_of(counter: &str) -> EventQuery {
    EventQuery::all().with_filters([EventFilter::for_event_types(["incremented"])
        .with_payload_predicates([json!({ "counter": counter })])])
}

struct Win {
    counter: String,
    expected: Option<u64>,
    sequence_number: u64,
}

#[test]
fn concurrent_conditional_appends_on_overlapping_and_disjoint_contexts_win_each_version_once() {
    let store = Arc::new(common::TemporaryStore::new());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut wins = Vec::new();
                for attempt in 0..ATTEMPTS_PER_THREAD {
                    let counter = counter_of(thread, attempt);
                    let context = context_of(&counter);
                    let seen = store.query(&context).unwrap().current_context_version;
                    // Two events, so a batch must never interleave with another.
                    let events = vec![
                        NewEvent::new("incremented", json!({ "counter": counter.clone() })),
                        NewEvent::new("noted", json!({ "counter": counter.clone() })),
                    ];
                    match store.append_if(events, &context, seen) {
                        Ok(result) => {
                            assert_eq!(result.committed_count, 2);
                            wins.push(Win {
                                counter,
                                expected: seen,
                                sequence_number: result.first_sequence_number,
                            });
                        }
                        Err(EventStoreError::ConditionalAppendConflict { expected, actual }) => {
                            assert_eq!(expected, seen);
                            assert!(actual > seen, "{actual:?} is not after {seen:?}");
                        }
                        Err(error) => panic!("append_if failed: {error}"),
                    }
                }
                wins
            })
        })
        .collect();
    let wins: Vec<Win> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();

    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), wins.len() * 2);
    assert_eq!(
        sequence_numbers(&records),
        (1..=records.len() as u64).collect::<Vec<_>>()
    );
    let mut won = HashSet::new();
    for win in &wins {
        assert!(
            won.insert((win.counter.clone(), win.expected)),
            "{} won version {:?} twice",
            win.counter,
            win.expected
        );
        // The version current just before the win is the one it expected.
        let context = context_of(&win.counter);
        let version_before = records[..(win.sequence_number - 1) as usize]
            .iter()
            .rev()
            .find(|record| context.matches_record(record))
            .map(|record| record.sequence_number);
        assert_eq!(version_before, win.expected, "{}", win.counter);
        let batch = &records[(win.sequence_number - 1) as usize..=win.sequence_number as usize];
        assert!(
            batch
                .iter()
                .all(|record| record.payload["counter"] == json!(win.counter))
        );
    }
    assert!(wins.iter().any(|win| win.counter == "shared"));
}
