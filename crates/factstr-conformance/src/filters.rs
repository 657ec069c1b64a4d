//! Filters: OR between filters, AND between a filter's type and payload parts.

use factstr::{EventFilter, EventQuery, EventStore};
use serde_json::json;

use crate::support::{event, queried_sequence_numbers};

fn store_with_mixed_events<S: EventStore>(new_store: &dyn Fn() -> S) -> S {
    let store = new_store();
    store
        .append(vec![
            event("opened", json!({"account": "a1"})),
            event("deposited", json!({"account": "a1", "amount": 5})),
            event("deposited", json!({"account": "a2", "amount": 7})),
            event("Deposited", json!({"account": "a1", "amount": 9})),
            event("withdrawn", json!({"account": "a2", "amount": 1})),
        ])
        .unwrap();
    store
}

pub fn no_filters_and_an_empty_filter_list_match_every_event<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = store_with_mixed_events(new_store);
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::all()),
        vec![1, 2, 3, 4, 5]
    );
    let empty = EventQuery::all().with_filters([]);
    assert_eq!(empty.filters, Some(vec![]));
    assert_eq!(
        queried_sequence_numbers(&store, &empty),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        store.query(&empty).unwrap().current_context_version,
        Some(5)
    );
}

pub fn filters_are_alternatives<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query = EventQuery::all().with_filters([
        EventFilter::for_event_types(["opened"]),
        EventFilter::default().with_payload_predicates([json!({"account": "a2"})]),
    ]);
    assert_eq!(queried_sequence_numbers(&store, &query), vec![1, 3, 5]);
}

pub fn event_types_none_does_not_constrain_the_type<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query = EventQuery::all().with_filters([EventFilter::default()]);
    assert_eq!(
        queried_sequence_numbers(&store, &query),
        vec![1, 2, 3, 4, 5]
    );
}

pub fn empty_event_type_list_matches_nothing<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query = EventQuery::for_event_types(Vec::<String>::new());
    let result = store.query(&query).unwrap();
    assert!(result.event_records.is_empty());
    assert_eq!(result.current_context_version, None);
}

pub fn event_types_match_exactly_and_case_sensitively<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::for_event_types(["deposited"])),
        vec![2, 3]
    );
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::for_event_types(["Deposited"])),
        vec![4]
    );
    assert!(queried_sequence_numbers(&store, &EventQuery::for_event_types(["deposit"])).is_empty());
    assert!(
        queried_sequence_numbers(&store, &EventQuery::for_event_types(["deposited "])).is_empty()
    );
}

pub fn type_part_and_payload_part_must_both_match<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query = EventQuery::all().with_filters([EventFilter::for_event_types(["deposited"])
        .with_payload_predicates([json!({"account": "a1"})])]);
    assert_eq!(queried_sequence_numbers(&store, &query), vec![2]);
    assert_eq!(
        store.query(&query).unwrap().current_context_version,
        Some(2)
    );
}

pub fn empty_predicate_list_matches_nothing<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query =
        EventQuery::all().with_filters([EventFilter::default().with_payload_predicates([])]);
    assert_eq!(
        query.filters.as_ref().unwrap()[0].payload_predicates,
        Some(vec![])
    );
    let result = store.query(&query).unwrap();
    assert!(result.event_records.is_empty());
    assert_eq!(result.current_context_version, None);
}

pub fn any_predicate_of_a_filter_may_match<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = store_with_mixed_events(new_store);
    let query =
        EventQuery::all().with_filters([EventFilter::for_event_types(["deposited", "withdrawn"])
            .with_payload_predicates([json!({"amount": 5}), json!({"amount": 1})])]);
    assert_eq!(queried_sequence_numbers(&store, &query), vec![2, 5]);
}
