//! Payload predicates: the recursive subset match, in `query`, `append_if`
//! and streams, and narrowing that agrees with the shared matcher.

use factstr::{EventFilter, EventQuery, EventStore, EventStoreError, payload_matches};
use serde_json::{Value, json};

use crate::support::{Deliveries, event, queried_sequence_numbers, sequence_numbers};

fn predicate_query(predicate: Value) -> EventQuery {
    EventQuery::all().with_filters([EventFilter::default().with_payload_predicates([predicate])])
}

/// Appends one event per payload (sequence numbers 1..) and returns the
/// sequence numbers `predicate` selects.
fn selected<S: EventStore>(
    new_store: &dyn Fn() -> S,
    payloads: &[Value],
    predicate: Value,
) -> Vec<u64> {
    let store = new_store();
    store
        .append(
            payloads
                .iter()
                .map(|payload| event("e", payload.clone()))
                .collect(),
        )
        .unwrap();
    queried_sequence_numbers(&store, &predicate_query(predicate))
}

pub fn scalar_predicates_need_equal_scalars<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!("a"),
        json!(1),
        json!(true),
        json!(null),
        json!("1"),
        json!(false),
    ];
    assert_eq!(selected(new_store, &payloads, json!("a")), vec![1]);
    assert_eq!(selected(new_store, &payloads, json!(1)), vec![2]);
    assert_eq!(selected(new_store, &payloads, json!(true)), vec![3]);
    assert_eq!(selected(new_store, &payloads, json!(null)), vec![4]);
    assert_eq!(selected(new_store, &payloads, json!("1")), vec![5]);
}

pub fn integer_and_float_predicates_do_not_match_each_other<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let payloads = [
        json!({"n": 1}),
        json!({"n": 1.0}),
        json!({"n": 1.5}),
        json!({"n": -1}),
    ];
    assert_eq!(selected(new_store, &payloads, json!({"n": 1})), vec![1]);
    assert_eq!(selected(new_store, &payloads, json!({"n": 1.0})), vec![2]);
    assert_eq!(selected(new_store, &payloads, json!({"n": 1.5})), vec![3]);
    assert_eq!(selected(new_store, &payloads, json!({"n": -1})), vec![4]);
}

pub fn object_predicate_matches_a_superset_object<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"account": "a1", "amount": 5, "note": "x"}),
        json!({"account": "a1"}),
        json!({"account": "a2", "amount": 5}),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"account": "a1"})),
        vec![1, 2]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"account": "a1", "amount": 5})),
        vec![1]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"amount": 5})),
        vec![1, 3]
    );
}

pub fn empty_object_predicate_matches_any_object_only<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({}),
        json!({"a": 1}),
        json!([]),
        json!("x"),
        json!(null),
        json!([{}]),
    ];
    assert_eq!(selected(new_store, &payloads, json!({})), vec![1, 2]);
}

pub fn null_valued_key_must_be_present_and_null<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"k": null}),
        json!({}),
        json!({"k": 0}),
        json!({"k": "null"}),
        json!({"k": [null]}),
    ];
    assert_eq!(selected(new_store, &payloads, json!({"k": null})), vec![1]);
}

pub fn nested_object_predicates_match_recursively<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"owner": {"name": "ada", "address": {"city": "x", "zip": 1}}}),
        json!({"owner": {"name": "ada", "address": {"city": "y"}}}),
        json!({"owner": {"name": "bob"}}),
        json!({"owner": "ada"}),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"owner": {"name": "ada"}})),
        vec![1, 2]
    );
    assert_eq!(
        selected(
            new_store,
            &payloads,
            json!({"owner": {"address": {"city": "x"}}})
        ),
        vec![1]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"owner": {}})),
        vec![1, 2, 3]
    );
}

pub fn array_predicate_elements_match_anywhere_in_the_array<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let payloads = [
        json!({"tags": ["a", "b", "c"]}),
        json!({"tags": ["c", "a"]}),
        json!({"tags": ["a"]}),
        json!({"tags": []}),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": ["a", "c"]})),
        vec![1, 2]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": ["c", "a"]})),
        vec![1, 2]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": ["a"]})),
        vec![1, 2, 3]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": ["a", "a"]})),
        vec![1, 2, 3]
    );
    assert!(selected(new_store, &payloads, json!({"tags": ["d"]})).is_empty());
}

pub fn empty_array_predicate_matches_any_array_only<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!([]),
        json!([1]),
        json!({}),
        json!({"k": []}),
        json!(null),
    ];
    assert_eq!(selected(new_store, &payloads, json!([])), vec![1, 2]);
    assert_eq!(selected(new_store, &payloads, json!({"k": []})), vec![4]);
}

pub fn arrays_of_objects_match_recursively<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"lines": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 2}]}),
        json!({"lines": [{"sku": "x", "qty": 2}]}),
        json!({"lines": [[{"sku": "x"}]]}),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"lines": [{"sku": "x"}]})),
        vec![1, 2]
    );
    assert_eq!(
        selected(
            new_store,
            &payloads,
            json!({"lines": [{"sku": "x", "qty": 2}]})
        ),
        vec![2]
    );
    assert_eq!(
        selected(
            new_store,
            &payloads,
            json!({"lines": [{"sku": "x"}, {"qty": 2}]})
        ),
        vec![1, 2]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"lines": [[{"sku": "x"}]]})),
        vec![3]
    );
}

pub fn scalar_predicate_never_matches_an_array<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"tags": ["a"]}),
        json!({"tags": "a"}),
        json!(["a"]),
        json!("a"),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": "a"})),
        vec![2]
    );
    assert_eq!(selected(new_store, &payloads, json!("a")), vec![4]);
    assert_eq!(
        selected(new_store, &payloads, json!({"tags": ["a"]})),
        vec![1]
    );
}

pub fn type_mismatches_never_match<S: EventStore>(new_store: &dyn Fn() -> S) {
    let payloads = [
        json!({"k": {"a": 1}}),
        json!({"k": [{"a": 1}]}),
        json!({"k": 1}),
        json!({"k": "1"}),
    ];
    assert_eq!(
        selected(new_store, &payloads, json!({"k": {"a": 1}})),
        vec![1]
    );
    assert_eq!(
        selected(new_store, &payloads, json!({"k": [{"a": 1}]})),
        vec![2]
    );
    assert!(selected(new_store, &payloads, json!({"k": true})).is_empty());
    assert!(selected(new_store, &payloads, json!([{"k": 1}])).is_empty());
}

pub fn payload_predicates_decide_conditional_append_contexts<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store
        .append(vec![
            event("deposited", json!({"account": "a1", "amount": 1})),
            event("deposited", json!({"account": "a1", "amount": 1.0})),
            event("deposited", json!({"account": ["a2"]})),
        ])
        .unwrap();
    let integer_context = EventQuery::all()
        .with_filters([EventFilter::for_event_types(["deposited"])
            .with_payload_predicates([json!({"amount": 1})])]);
    assert_eq!(
        store
            .query(&integer_context)
            .unwrap()
            .current_context_version,
        Some(1)
    );
    let result = store.append_if(
        vec![event("deposited", json!({"amount": 2}))],
        &integer_context,
        Some(2),
    );
    assert_eq!(
        result,
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(2),
            actual: Some(1)
        })
    );
    let scalar_in_array = predicate_query(json!({"account": "a2"}));
    assert_eq!(
        store
            .query(&scalar_in_array)
            .unwrap()
            .current_context_version,
        None
    );
    store
        .append_if(
            vec![event("deposited", json!({"account": "a2"}))],
            &scalar_in_array,
            None,
        )
        .unwrap();
    assert_eq!(
        store
            .query(&scalar_in_array)
            .unwrap()
            .current_context_version,
        Some(4)
    );
}

pub fn payload_predicates_filter_live_streams<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let deliveries = Deliveries::new();
    let _stream = store
        .stream_to(
            &predicate_query(json!({"account": "a1", "amount": 1})),
            deliveries.handler(),
        )
        .unwrap();
    store
        .append(vec![
            event("deposited", json!({"account": "a1", "amount": 1.0})),
            event("deposited", json!({"account": ["a1"], "amount": 1})),
            event(
                "deposited",
                json!({"account": "a1", "amount": 1, "extra": true}),
            ),
        ])
        .unwrap();
    store
        .append(vec![event("marker", json!({"account": "a1", "amount": 1}))])
        .unwrap();
    let batches = deliveries.wait_for_sequence(4);
    let delivered: Vec<Vec<u64>> = batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect();
    assert_eq!(delivered, vec![vec![3], vec![4]]);
}

/// A log of generated payloads, so that any index a store uses to narrow
/// predicates is checked against the shared matcher on many shapes.
pub fn narrowed_queries_agree_with_the_shared_matcher<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let mut random = Xorshift(0x2545_f491);
    let scalars = [
        json!(1),
        json!(1.0),
        json!(2),
        json!("1"),
        json!("a"),
        json!(null),
        json!(true),
        json!(-0.5),
    ];
    let types = ["t0", "t1", "t2"];
    for _ in 0..30 {
        let batch = (0..20)
            .map(|_| {
                let shape = random.below(6);
                let mut scalar = || scalars[random.below(8) as usize].clone();
                let payload = match shape {
                    0 => json!({ "k": scalar() }),
                    1 => json!({ "k": [scalar(), scalar()] }),
                    2 => json!({ "k": { "inner": scalar() }, "j": scalar() }),
                    3 => json!([scalar(), { "k": scalar() }]),
                    4 => scalar(),
                    _ => json!({ "j": scalar(), "k": [{ "inner": scalar() }] }),
                };
                event(types[random.below(3) as usize], payload)
            })
            .collect();
        store.append(batch).unwrap();
    }
    let all = store.query(&EventQuery::all()).unwrap().event_records;
    let predicates = [
        json!({"k": 1}),
        json!({"k": 1.0}),
        json!({"k": "1"}),
        json!({"k": [1]}),
        json!({"k": [1, "a"]}),
        json!({"k": {"inner": null}}),
        json!({"k": {}}),
        json!({"k": []}),
        json!({"k": [{"inner": true}]}),
        json!([{"k": -0.5}]),
        json!([1.0]),
        json!(null),
        json!({"j": 2, "k": {"inner": "a"}}),
        json!({}),
    ];
    let type_choices: [Option<Vec<&str>>; 3] = [None, Some(vec!["t1"]), Some(vec!["t0", "t2"])];
    for predicate in &predicates {
        for types in &type_choices {
            let filter = EventFilter {
                event_types: types
                    .as_ref()
                    .map(|types| types.iter().map(|t| t.to_string()).collect()),
                payload_predicates: Some(vec![predicate.clone()]),
            };
            let query = EventQuery::all().with_filters([filter.clone()]);
            let expected: Vec<u64> = all
                .iter()
                .filter(|record| filter.matches(&record.event_type, &record.payload))
                .map(|record| record.sequence_number)
                .collect();
            assert!(
                expected.iter().all(|&sequence| payload_matches(
                    predicate,
                    &all[sequence as usize - 1].payload
                ))
            );
            let result = store.query(&query).unwrap();
            assert_eq!(
                sequence_numbers(&result.event_records),
                expected,
                "{predicate} {types:?}"
            );
            assert_eq!(
                result.current_context_version,
                expected.last().copied(),
                "{predicate} {types:?}"
            );
            let cursor = 300;
            let after: Vec<u64> = expected
                .iter()
                .copied()
                .filter(|&sequence| sequence > cursor)
                .collect();
            let result = store
                .query(&query.clone().with_min_sequence_number(cursor))
                .unwrap();
            assert_eq!(
                sequence_numbers(&result.event_records),
                after,
                "{predicate} {types:?} after {cursor}"
            );
            assert_eq!(result.current_context_version, expected.last().copied());
        }
    }
}

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, modulus: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % modulus
    }
}
