//! What PostgreSQL handles differently from the shared rules, and how the
//! store keeps to the rules anyway: NUL characters (text and jsonb cannot
//! hold them), numbers jsonb considers equal (`1` and `1.0`), jsonb's
//! top-level "array contains scalar" rule, and numbers jsonb would print
//! differently.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{EventFilter, EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_conformance::support::{Deliveries, numbered, sequence_numbers};
use serde_json::{Value, json};
use support::new_store;

fn expect_invalid_input<T: std::fmt::Debug>(result: Result<T, EventStoreError>) -> String {
    match result {
        Err(EventStoreError::InvalidInput { message }) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

fn matching(store: &impl EventStore, predicate: Value) -> Vec<u64> {
    let query = EventQuery::all()
        .with_filters([EventFilter::default().with_payload_predicates([predicate])]);
    sequence_numbers(&store.query(&query).unwrap().event_records)
}

#[test]
fn nul_characters_in_event_types_or_payloads_are_invalid_input_and_write_nothing() {
    let store = new_store();
    let refused = [
        vec![NewEvent::new("a\0b", json!({}))],
        vec![NewEvent::new("a", json!({"text": "a\u{0}b"}))],
        vec![NewEvent::new("a", json!({"nested": [{"deep": ["\u{0}"]}]}))],
        vec![NewEvent::new("a", json!({"key\u{0}": 1}))],
        vec![NewEvent::new("a", json!("\u{0}"))],
        vec![
            NewEvent::new("ok", json!(1)),
            NewEvent::new("a", json!(["\u{0}"])),
        ],
    ];
    for batch in refused {
        let message = expect_invalid_input(store.append(batch.clone()));
        assert!(message.contains("NUL"), "{message}");
        expect_invalid_input(store.append_if(batch, &EventQuery::all(), None));
    }
    assert!(
        store
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            .is_empty()
    );
    assert_eq!(
        store
            .append(numbered("a", 1))
            .unwrap()
            .first_sequence_number,
        1
    );
}

#[test]
fn queries_with_nul_characters_match_nothing_instead_of_failing() {
    let store = new_store();
    store
        .append(vec![NewEvent::new("a", json!({"k": "v"}))])
        .unwrap();
    let with_nul_type = EventQuery::for_event_types(["a\0"]);
    let with_nul_predicate = EventQuery::all()
        .with_filters([EventFilter::default().with_payload_predicates([json!({"k": "v\u{0}"})])]);
    for query in [&with_nul_type, &with_nul_predicate] {
        let result = store.query(query).unwrap();
        assert!(result.event_records.is_empty());
        assert_eq!(result.current_context_version, None);
        store.append_if(numbered("b", 1), query, None).unwrap();
    }
    // A filter with a NUL predicate next to a usable one keeps the usable one.
    let mixed = EventQuery::all()
        .with_filters([EventFilter::default()
            .with_payload_predicates([json!({"k": "\u{0}"}), json!({"k": "v"})])]);
    assert_eq!(
        sequence_numbers(&store.query(&mixed).unwrap().event_records),
        vec![1]
    );
}

#[test]
fn integers_and_floats_stay_apart_in_query_append_if_and_streams() {
    let store = new_store();
    let only_integer_one = Deliveries::new();
    let _stream = store
        .stream_to(
            &EventQuery::all()
                .with_filters([EventFilter::default().with_payload_predicates([json!({"n": 1})])]),
            only_integer_one.handler(),
        )
        .unwrap();
    store
        .append(vec![
            NewEvent::new("n", json!({"n": 1})),
            NewEvent::new("n", json!({"n": 1.0})),
            NewEvent::new("n", json!({"n": 1.5})),
            NewEvent::new("n", json!({"n": 100_000_000_000_000_000_u64})),
            NewEvent::new("n", json!({"n": 1e17})),
        ])
        .unwrap();
    assert_eq!(matching(&store, json!({"n": 1})), vec![1]);
    assert_eq!(matching(&store, json!({"n": 1.0})), vec![2]);
    assert_eq!(
        matching(&store, json!({"n": 100_000_000_000_000_000_u64})),
        vec![4]
    );
    assert_eq!(matching(&store, json!({"n": 1e17})), vec![5]);

    let float_context = EventQuery::all()
        .with_filters([EventFilter::default().with_payload_predicates([json!({"n": 1.0})])]);
    assert_eq!(
        store.append_if(numbered("x", 1), &float_context, Some(1)),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(1),
            actual: Some(2)
        })
    );
    store
        .append_if(numbered("x", 1), &float_context, Some(2))
        .unwrap();

    store
        .append(vec![NewEvent::new("n", json!({"n": 1.0}))])
        .unwrap();
    store
        .append(vec![NewEvent::new("n", json!({"n": 1}))])
        .unwrap();
    let delivered = only_integer_one.wait_for_sequence(8);
    assert_eq!(
        delivered
            .iter()
            .map(|batch| sequence_numbers(batch))
            .collect::<Vec<_>>(),
        vec![vec![1], vec![8]]
    );
}

#[test]
fn a_scalar_predicate_never_matches_an_array_payload() {
    let store = new_store();
    let scalars_only = Deliveries::new();
    let scalar_query = EventQuery::all()
        .with_filters([EventFilter::default().with_payload_predicates([json!("x")])]);
    let _stream = store
        .stream_to(&scalar_query, scalars_only.handler())
        .unwrap();
    store
        .append(vec![
            NewEvent::new("v", json!(["x"])),
            NewEvent::new("v", json!("x")),
            NewEvent::new("v", json!([["x"]])),
            NewEvent::new("v", json!({"k": ["x"]})),
        ])
        .unwrap();
    assert_eq!(matching(&store, json!("x")), vec![2]);
    assert_eq!(matching(&store, json!(["x"])), vec![1]);
    assert_eq!(matching(&store, json!({"k": "x"})), Vec::<u64>::new());
    assert_eq!(matching(&store, json!({"k": ["x"]})), vec![4]);

    let result = store.query(&scalar_query).unwrap();
    assert_eq!(result.current_context_version, Some(2));
    store
        .append(vec![NewEvent::new("v", json!(["x", "y"]))])
        .unwrap();
    assert_eq!(
        store.query(&scalar_query).unwrap().current_context_version,
        Some(2)
    );
    store
        .append_if(numbered("w", 1), &scalar_query, Some(2))
        .unwrap();
    store.append(vec![NewEvent::new("v", json!("x"))]).unwrap();
    assert_eq!(
        sequence_numbers(&scalars_only.wait_for_sequence(7).concat()),
        vec![2, 7]
    );
}

#[test]
fn numbers_read_back_exactly_as_written() {
    let store = new_store();
    let payloads = vec![
        json!(1e17),
        json!(-2.5e18),
        json!(1e16),
        json!(100_000_000_000_000_000_u64),
        json!(5e-324),
        json!(f64::MAX),
        json!(0.1),
        json!(-0.0),
        json!({"a": 1.0, "b": [1e20, 3]}),
    ];
    store
        .append(
            payloads
                .iter()
                .map(|payload| NewEvent::new("n", payload.clone()))
                .collect(),
        )
        .unwrap();
    let read: Vec<Value> = store
        .query(&EventQuery::all())
        .unwrap()
        .event_records
        .into_iter()
        .map(|record| record.payload)
        .collect();
    for (read, written) in read.iter().zip(&payloads) {
        assert_eq!(read, written);
        assert_eq!(read.to_string(), written.to_string());
    }
}
