//! Query: order, the exclusive cursor, and the two reported figures.

use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::{EventQuery, EventStore, EventStoreError};
use serde_json::json;

use crate::support::{event, numbered, queried_sequence_numbers, sequence_numbers};

pub fn query_returns_records_in_ascending_sequence_order<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("b", 3)).unwrap();
    store.append(numbered("a", 2)).unwrap();
    store.append(numbered("b", 1)).unwrap();
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::all()),
        vec![1, 2, 3, 4, 5, 6]
    );
    let query = EventQuery::for_event_types(["b", "a"]);
    assert_eq!(
        queried_sequence_numbers(&store, &query),
        vec![1, 2, 3, 4, 5, 6]
    );
    let records = store
        .query(&EventQuery::for_event_types(["b"]))
        .unwrap()
        .event_records;
    assert_eq!(sequence_numbers(&records), vec![1, 2, 3, 6]);
    assert_eq!(records[1].payload, json!({"n": 1}));
}

pub fn min_sequence_number_is_an_exclusive_cursor<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 5)).unwrap();
    let query = EventQuery::all().with_min_sequence_number(2);
    assert_eq!(queried_sequence_numbers(&store, &query), vec![3, 4, 5]);
    let query = EventQuery::all().with_min_sequence_number(0);
    assert_eq!(
        queried_sequence_numbers(&store, &query),
        vec![1, 2, 3, 4, 5]
    );
    let query = EventQuery::for_event_types(["a"]).with_min_sequence_number(4);
    assert_eq!(queried_sequence_numbers(&store, &query), vec![5]);
}

pub fn last_returned_sequence_number_is_the_last_record_or_none<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 3)).unwrap();
    store.append(numbered("b", 1)).unwrap();
    let result = store.query(&EventQuery::for_event_types(["a"])).unwrap();
    assert_eq!(result.last_returned_sequence_number, Some(3));
    let result = store.query(&EventQuery::for_event_types(["c"])).unwrap();
    assert_eq!(result.last_returned_sequence_number, None);
}

pub fn context_version_ignores_min_sequence_number<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 3)).unwrap();
    store.append(numbered("b", 2)).unwrap();
    let query = EventQuery::for_event_types(["a"]).with_min_sequence_number(3);
    let result = store.query(&query).unwrap();
    assert!(result.event_records.is_empty());
    assert_eq!(result.last_returned_sequence_number, None);
    assert_eq!(result.current_context_version, Some(3));
    let result = store
        .query(&EventQuery::all().with_min_sequence_number(1))
        .unwrap();
    assert_eq!(result.last_returned_sequence_number, Some(5));
    assert_eq!(result.current_context_version, Some(5));
}

pub fn context_version_is_none_when_nothing_matches<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let result = store.query(&EventQuery::for_event_types(["zzz"])).unwrap();
    assert_eq!(result.current_context_version, None);
    assert!(result.event_records.is_empty());
}

pub fn query_on_an_empty_store_returns_nothing<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let result = store.query(&EventQuery::all()).unwrap();
    assert!(result.event_records.is_empty());
    assert_eq!(result.last_returned_sequence_number, None);
    assert_eq!(result.current_context_version, None);
}

pub fn cursor_beyond_the_log_returns_no_records_but_the_context_version<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let result = store
        .query(&EventQuery::all().with_min_sequence_number(MAX_SEQUENCE_NUMBER))
        .unwrap();
    assert!(result.event_records.is_empty());
    assert_eq!(result.current_context_version, Some(2));
}

pub fn min_sequence_number_beyond_the_sequence_range_is_invalid_input<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(vec![event("a", json!(1))]).unwrap();
    let query = EventQuery::all().with_min_sequence_number(MAX_SEQUENCE_NUMBER + 1);
    let result = store.query(&query);
    let Err(EventStoreError::InvalidInput { message }) = result else {
        panic!("expected InvalidInput, got {result:?}");
    };
    assert!(message.contains("min_sequence_number"), "{message}");
}
