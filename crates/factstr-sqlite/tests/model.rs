//! A model test: random sequences of appends, conditional appends (with
//! current, stale and arbitrary versions) and queries run on `SqliteStore`
//! and on `MemoryStore`, the reference; every result must agree (commit
//! times aside), and so must the batches a durable stream replays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use factstr::{
    DurableStream, EventFilter, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent,
    QueryResult,
};
use factstr_conformance::support::Deliveries;
use factstr_memory::MemoryStore;
use factstr_sqlite::{SqliteDurability, SqliteStoreOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
enum Operation {
    Append(Vec<NewEvent>),
    AppendIf {
        events: Vec<NewEvent>,
        context: EventQuery,
        version: VersionChoice,
    },
    Query(EventQuery),
}

/// Which version a conditional append expects, relative to the current one.
#[derive(Clone, Debug)]
enum VersionChoice {
    Current,
    Older(u64),
    Nothing,
    Exactly(u64),
}

fn scalar() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(1),
        json!(1.0),
        json!(2),
        json!(-0.5),
        json!("1"),
        json!("x"),
        json!(null),
        json!(true),
    ])
}

fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        scalar(),
        scalar().prop_map(|value| json!({ "k": value })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": [a, b] })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": { "i": a }, "j": b })),
        (scalar(), scalar()).prop_map(|(a, b)| json!([a, { "k": b }])),
    ]
}

fn predicate() -> impl Strategy<Value = Value> {
    prop_oneof![
        payload(),
        Just(json!({})),
        Just(json!([])),
        Just(json!({ "k": [] })),
        Just(json!({ "k": {} })),
        scalar().prop_map(|value| json!({ "k": [value] })),
        scalar().prop_map(|value| json!({ "j": value })),
    ]
}

fn event_type() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned)
}

fn new_events() -> impl Strategy<Value = Vec<NewEvent>> {
    prop::collection::vec(
        (event_type(), payload())
            .prop_map(|(event_type, payload)| NewEvent::new(event_type, payload)),
        1..4,
    )
}

fn filter() -> impl Strategy<Value = EventFilter> {
    (
        prop::option::of(prop::collection::vec(event_type(), 0..3)),
        prop::option::of(prop::collection::vec(predicate(), 0..3)),
    )
        .prop_map(|(event_types, payload_predicates)| EventFilter {
            event_types,
            payload_predicates,
        })
}

fn query() -> impl Strategy<Value = EventQuery> {
    (
        prop::option::weighted(0.85, prop::collection::vec(filter(), 0..3)),
        prop::option::of(0_u64..30),
    )
        .prop_map(|(filters, min_sequence_number)| EventQuery {
            filters,
            min_sequence_number,
        })
}

fn version_choice() -> impl Strategy<Value = VersionChoice> {
    prop_oneof![
        3 => Just(VersionChoice::Current),
        1 => (0_u64..4).prop_map(VersionChoice::Older),
        1 => Just(VersionChoice::Nothing),
        1 => (0_u64..40).prop_map(VersionChoice::Exactly),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => new_events().prop_map(Operation::Append),
        3 => (new_events(), query(), version_choice()).prop_map(|(events, context, version)| {
            Operation::AppendIf { events, context, version }
        }),
        4 => query().prop_map(Operation::Query),
    ]
}

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

fn comparable(result: &QueryResult) -> ComparableResult {
    (
        result.event_records.iter().map(fact).collect(),
        result.last_returned_sequence_number,
        result.current_context_version,
    )
}

fn expected_version(current: Option<u64>, choice: &VersionChoice) -> Option<u64> {
    match choice {
        VersionChoice::Current => current,
        VersionChoice::Older(back) => current.and_then(|version| version.checked_sub(back + 1)),
        VersionChoice::Nothing => None,
        VersionChoice::Exactly(version) => Some(*version),
    }
}

/// The batches a new durable stream of `query` replays.
fn replayed_facts(store: &impl EventStore, query: &EventQuery) -> Vec<Vec<Fact>> {
    let deliveries = Deliveries::new();
    let name = format!("replay-{}", serde_json::to_string(query).unwrap());
    let _stream = store
        .stream_to_durable(&DurableStream::new(name), query, deliveries.handler())
        .unwrap();
    deliveries
        .batches()
        .iter()
        .map(|batch| batch.iter().map(fact).collect())
        .collect()
}

fn run(operations: Vec<Operation>, stream_query: EventQuery) -> Result<(), TestCaseError> {
    let sqlite = common::TemporaryStore::with_options(
        SqliteStoreOptions::default().durability(SqliteDurability::Normal),
    );
    let memory = MemoryStore::new();
    for operation in operations {
        match operation {
            Operation::Append(events) => {
                prop_assert_eq!(sqlite.append(events.clone()), memory.append(events));
            }
            Operation::AppendIf {
                events,
                context,
                version,
            } => {
                let current = memory.query(&context).unwrap().current_context_version;
                let expected = expected_version(current, &version);
                let in_sqlite = sqlite.append_if(events.clone(), &context, expected);
                let in_memory = memory.append_if(events, &context, expected);
                prop_assert_eq!(&in_sqlite, &in_memory, "context {:?}", context);
                if let Err(error) = in_memory {
                    prop_assert!(
                        matches!(error, EventStoreError::ConditionalAppendConflict { .. }),
                        "{}",
                        error
                    );
                }
            }
            Operation::Query(query) => {
                let in_sqlite = sqlite.query(&query).unwrap();
                let in_memory = memory.query(&query).unwrap();
                prop_assert_eq!(
                    comparable(&in_sqlite),
                    comparable(&in_memory),
                    "query {:?}",
                    query
                );
            }
        }
    }
    prop_assert_eq!(
        comparable(&sqlite.query(&EventQuery::all()).unwrap()),
        comparable(&memory.query(&EventQuery::all()).unwrap())
    );
    prop_assert_eq!(
        replayed_facts(&sqlite, &stream_query),
        replayed_facts(&memory, &stream_query),
        "stream query {:?}",
        stream_query
    );
    Ok(())
}

/// Replays read committed batches in pages of about 2,048 events; a page
/// must never split a batch, also when the stream's query narrows the read.
#[test]
fn paged_replays_keep_every_batch_whole_and_agree_with_the_memory_store() {
    let sqlite = common::TemporaryStore::with_options(
        SqliteStoreOptions::default().durability(SqliteDurability::Normal),
    );
    let memory = MemoryStore::new();
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
        sqlite.append(batch.clone()).unwrap();
        memory.append(batch).unwrap();
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
        let replayed = replayed_facts(&sqlite.store, query);
        let expected = replayed_facts(&memory, query);
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sqlite_store_agrees_with_the_memory_store(
        operations in prop::collection::vec(operation(), 1..40),
        stream_query in query(),
    ) {
        run(operations, stream_query)?;
    }
}
