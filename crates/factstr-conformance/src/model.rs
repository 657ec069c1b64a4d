//! The differential model test: the store under test and a reference
//! store (the memory store) run the same operations and must give the same
//! results, commit times aside (each store stamps its own). Compared are
//! the results of appends, conditional appends (winning and conflicting),
//! queries and pages, the batches a live stream receives meanwhile, and
//! the batches a durable stream replays afterwards.
//!
//! The operations come from [`crate::random`]; a failing run is shrunk to
//! a short one, and its seed is kept in `model.proptest-regressions` next
//! to this file, which every store re-runs first.

use std::cell::Cell;

use factstr::{
    DurableStream, EventFilter, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent,
    QueryResult,
};
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};
use proptest::{prop_assert, prop_assert_eq};
use serde_json::{Value, json};

use crate::persistent::Persistent;
use crate::random::{self, Operation, VersionChoice};
use crate::support::Deliveries;

/// A record without its commit time.
type Fact = (u64, String, Value);

/// A query result without commit times.
type ComparableResult = (Vec<Fact>, Option<u64>, Option<u64>);

fn fact(record: &EventRecord) -> Fact {
    (
        record.sequence_number,
        record.event_type.clone(),
        record.payload.clone(),
    )
}

fn facts(batches: &[Vec<EventRecord>]) -> Vec<Vec<Fact>> {
    batches
        .iter()
        .map(|batch| batch.iter().map(fact).collect())
        .collect()
}

fn comparable(result: &QueryResult) -> ComparableResult {
    (
        result.event_records.iter().map(fact).collect(),
        result.last_returned_sequence_number,
        result.current_context_version,
    )
}

/// The batches a new durable stream of `query` replays.
fn replayed_facts(store: &impl EventStore, query: &EventQuery) -> Vec<Vec<Fact>> {
    let deliveries = Deliveries::new();
    let name = format!("replay-{}", serde_json::to_string(query).unwrap());
    let _stream = store
        .stream_to_durable(&DurableStream::new(name), query, deliveries.handler())
        .unwrap();
    facts(&deliveries.batches())
}

/// How much a run exercised, to check that the generator reaches every
/// outcome.
#[derive(Default)]
struct Exercised {
    wins: Cell<u64>,
    conflicts: Cell<u64>,
    queries_with_records: Cell<u64>,
}

fn count(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

/// Runs `operations` on `tested` and `reference` (both fresh) with a live
/// stream of `stream_query` on each, and compares every result.
fn run(
    tested: &impl EventStore,
    reference: &impl EventStore,
    operations: Vec<Operation>,
    stream_query: &EventQuery,
    exercised: &Exercised,
) -> Result<(), TestCaseError> {
    let delivered_tested = Deliveries::new();
    let delivered_reference = Deliveries::new();
    let _tested_stream = tested
        .stream_to(stream_query, delivered_tested.handler())
        .unwrap();
    let _reference_stream = reference
        .stream_to(stream_query, delivered_reference.handler())
        .unwrap();
    for operation in operations {
        match operation {
            Operation::Append(events) => {
                prop_assert_eq!(tested.append(events.clone()), reference.append(events));
            }
            Operation::AppendIf {
                events,
                context,
                version,
            } => {
                let current = reference.query(&context).unwrap().current_context_version;
                let expected = version.expected(current);
                let in_tested = tested.append_if(events.clone(), &context, expected);
                let in_reference = reference.append_if(events, &context, expected);
                prop_assert_eq!(
                    &in_tested,
                    &in_reference,
                    "append_if with context {:?} expecting {:?}",
                    context,
                    expected
                );
                match in_reference {
                    Ok(_) => count(&exercised.wins),
                    Err(error) => {
                        prop_assert!(
                            matches!(error, EventStoreError::ConditionalAppendConflict { .. }),
                            "{}",
                            error
                        );
                        count(&exercised.conflicts);
                    }
                }
            }
            Operation::Query(query) => {
                let in_reference = comparable(&reference.query(&query).unwrap());
                prop_assert_eq!(
                    comparable(&tested.query(&query).unwrap()),
                    in_reference.clone(),
                    "query {:?}",
                    query
                );
                if !in_reference.0.is_empty() {
                    count(&exercised.queries_with_records);
                }
            }
            Operation::QueryPage { query, limit } => {
                prop_assert_eq!(
                    comparable(&tested.query_page(&query, limit).unwrap()),
                    comparable(&reference.query_page(&query, limit).unwrap()),
                    "page of {} of {:?}",
                    limit,
                    query
                );
            }
        }
    }
    prop_assert_eq!(
        comparable(&tested.query(&EventQuery::all()).unwrap()),
        comparable(&reference.query(&EventQuery::all()).unwrap())
    );

    // Both live streams received the same batches: wait until both
    // received the newest matching event (stream_to ignores the query's
    // min_sequence_number, as does the context version).
    if let Some(last) = reference
        .query(stream_query)
        .unwrap()
        .current_context_version
    {
        delivered_reference.wait_for_sequence(last);
        delivered_tested.wait_for_sequence(last);
    }
    prop_assert_eq!(
        facts(&delivered_tested.batches()),
        facts(&delivered_reference.batches()),
        "live stream_to {:?}",
        stream_query
    );
    prop_assert_eq!(
        replayed_facts(tested, stream_query),
        replayed_facts(reference, stream_query),
        "durable replay of {:?}",
        stream_query
    );
    Ok(())
}

/// Runs known operation lists that once told a store and the reference
/// apart, then `cases` random ones (each on a fresh place).
pub fn the_store_agrees_with_the_reference_on_random_operations<L, S, R>(
    store: &Persistent<'_, L, S>,
    reference: &dyn Fn() -> R,
    cases: u32,
) where
    S: EventStore,
    R: EventStore,
{
    let exercised = Exercised::default();
    let run_fresh = |operations: Vec<Operation>, stream_query: EventQuery| {
        let location = store.new_location();
        let tested = store.open(&location);
        run(&tested, &reference(), operations, &stream_query, &exercised)
    };

    // An empty object predicate matches objects only, not the scalar 1.
    let scalar_under_empty_object = || {
        EventQuery::all().with_filters([
            EventFilter::for_event_types(["c"]).with_payload_predicates([json!({})])
        ])
    };
    for (operations, stream_query) in [
        (
            vec![
                Operation::Append(vec![NewEvent::new("c", json!(1))]),
                Operation::Query(scalar_under_empty_object()),
            ],
            EventQuery::all(),
        ),
        (
            vec![
                Operation::Append(vec![NewEvent::new("c", json!(1))]),
                Operation::AppendIf {
                    events: vec![NewEvent::new("c", json!(1))],
                    context: scalar_under_empty_object(),
                    version: VersionChoice::Current,
                },
            ],
            scalar_under_empty_object(),
        ),
    ] {
        if let Err(failure) = run_fresh(operations.clone(), stream_query) {
            panic!("known case {operations:?}: {failure}");
        }
    }

    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 2_000,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    let outcome = runner.run(
        &(random::operations(), random::query()),
        |(operations, stream_query)| run_fresh(operations, stream_query),
    );
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(reason, (operations, stream_query))) => panic!(
            "the store and the reference differ: {reason}\noperations: {operations:#?}\nstream query: {stream_query:?}"
        ),
        Err(error) => panic!("{error}"),
    }
    let (wins, conflicts, queries) = (
        exercised.wins.get(),
        exercised.conflicts.get(),
        exercised.queries_with_records.get(),
    );
    assert!(
        wins > 5 && conflicts > 5 && queries > 5,
        "the random operations exercised too little: {wins} wins, {conflicts} conflicts, \
         {queries} queries with records"
    );
}

/// Replays read committed batches page by page (a SQL store reads some
/// thousand events at a time); a page must never split a batch, also when
/// the stream's query narrows the read.
pub fn long_replays_keep_every_batch_whole_and_agree_with_the_reference<L, S, R>(
    store: &Persistent<'_, L, S>,
    reference: &dyn Fn() -> R,
) where
    S: EventStore,
    R: EventStore,
{
    let location = store.new_location();
    let tested = store.open(&location);
    let reference = reference();
    let mut number = 0_u64;
    for batch_index in 0..260_u64 {
        // Sizes 1..=37, and one batch larger than a page.
        let size = if batch_index == 100 {
            5_000
        } else {
            1 + batch_index % 37
        };
        let batch: Vec<NewEvent> = (0..size)
            .map(|_| {
                number += 1;
                let event_type = if number.is_multiple_of(3) { "b" } else { "a" };
                NewEvent::new(event_type, json!({ "k": number % 7, "n": number }))
            })
            .collect();
        tested.append(batch.clone()).unwrap();
        reference.append(batch).unwrap();
    }
    let queries = [
        EventQuery::all(),
        EventQuery::for_event_types(["b"]),
        EventQuery::all()
            .with_filters([EventFilter::default().with_payload_predicates([json!({ "k": 3 })])]),
        EventQuery::all().with_filters([EventFilter::for_event_types(["a"])
            .with_payload_predicates([json!({ "k": 1 }), json!({ "k": 2 })])]),
        EventQuery::all()
            .with_filters([EventFilter::default().with_payload_predicates([json!({})])]),
    ];
    for query in &queries {
        let replayed = replayed_facts(&tested, query);
        let expected = replayed_facts(&reference, query);
        let first_difference = replayed
            .iter()
            .zip(&expected)
            .position(|(replayed, expected)| replayed != expected);
        assert_eq!(
            first_difference, None,
            "first differing batch for {query:?}"
        );
        assert_eq!(replayed.len(), expected.len(), "{query:?}");
        assert!(replayed.len() > 200, "{query:?}");
    }
}
