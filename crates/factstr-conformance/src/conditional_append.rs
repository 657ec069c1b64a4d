//! Conditional append: the context version check and what a conflict leaves.

use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::{EventQuery, EventStore, EventStoreError};
use serde_json::json;

use crate::support::{event, numbered, queried_sequence_numbers};

pub fn append_if_with_no_expected_version_succeeds_on_an_empty_context<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("other", 2)).unwrap();
    let context = EventQuery::for_event_types(["mine"]);
    let result = store
        .append_if(numbered("mine", 2), &context, None)
        .unwrap();
    assert_eq!(
        (
            result.first_sequence_number,
            result.last_sequence_number,
            result.committed_count
        ),
        (3, 4, 2)
    );
}

pub fn append_if_with_no_expected_version_conflicts_once_the_context_has_events<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("mine", 1)).unwrap();
    let context = EventQuery::for_event_types(["mine"]);
    assert_eq!(
        store.append_if(numbered("mine", 1), &context, None),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: None,
            actual: Some(1)
        })
    );
}

pub fn append_if_with_the_current_version_succeeds<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("mine", 2)).unwrap();
    store.append(numbered("other", 1)).unwrap();
    let context = EventQuery::for_event_types(["mine"]);
    let version = store.query(&context).unwrap().current_context_version;
    assert_eq!(version, Some(2));
    let result = store
        .append_if(numbered("mine", 1), &context, version)
        .unwrap();
    assert_eq!(result.first_sequence_number, 4);
    assert_eq!(
        store.query(&context).unwrap().current_context_version,
        Some(4)
    );
}

pub fn stale_expected_version_conflicts_and_reports_the_actual_version<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let context = EventQuery::for_event_types(["mine"]);
    let seen = store.query(&context).unwrap().current_context_version;
    store.append(numbered("mine", 1)).unwrap();
    store
        .append_if(numbered("mine", 1), &context, Some(1))
        .unwrap();
    assert_eq!(
        store.append_if(numbered("mine", 1), &context, seen),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: None,
            actual: Some(2)
        })
    );
    assert_eq!(
        store.append_if(numbered("mine", 1), &context, Some(1)),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(1),
            actual: Some(2)
        })
    );
    assert_eq!(
        store.append_if(numbered("mine", 1), &context, Some(7)),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(7),
            actual: Some(2)
        })
    );
}

pub fn conflict_writes_nothing_and_consumes_no_sequence_number<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("mine", 1)).unwrap();
    let context = EventQuery::for_event_types(["mine"]);
    assert!(
        store
            .append_if(numbered("mine", 3), &context, None)
            .is_err()
    );
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::all()),
        vec![1]
    );
    assert_eq!(
        store
            .append(numbered("x", 1))
            .unwrap()
            .first_sequence_number,
        2
    );
}

pub fn append_if_ignores_the_context_query_min_sequence_number<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("mine", 3)).unwrap();
    let context = EventQuery::for_event_types(["mine"]).with_min_sequence_number(3);
    assert_eq!(
        store.append_if(numbered("mine", 1), &context, None),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: None,
            actual: Some(3)
        })
    );
    store
        .append_if(numbered("mine", 1), &context, Some(3))
        .unwrap();
}

pub fn events_outside_the_context_do_not_change_its_version<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let context = EventQuery::all()
        .with_filters([factstr::EventFilter::for_event_types(["deposited"])
            .with_payload_predicates([json!({"account": "a1"})])]);
    store
        .append(vec![event("deposited", json!({"account": "a1"}))])
        .unwrap();
    store
        .append(vec![event("deposited", json!({"account": "a2"}))])
        .unwrap();
    store
        .append(vec![event("withdrawn", json!({"account": "a1"}))])
        .unwrap();
    store
        .append_if(
            vec![event("deposited", json!({"account": "a1"}))],
            &context,
            Some(1),
        )
        .unwrap();
}

pub fn appended_events_become_the_new_context_version<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let context = EventQuery::for_event_types(["mine"]);
    let first = store
        .append_if(numbered("mine", 2), &context, None)
        .unwrap();
    let second = store
        .append_if(
            numbered("mine", 1),
            &context,
            Some(first.last_sequence_number),
        )
        .unwrap();
    assert_eq!(second.first_sequence_number, 3);
    // A batch that does not match its own context leaves the version alone.
    store
        .append_if(numbered("other", 1), &context, Some(3))
        .unwrap();
    assert_eq!(
        store.query(&context).unwrap().current_context_version,
        Some(3)
    );
}

pub fn expected_version_beyond_the_sequence_range_is_invalid_input<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let result = store.append_if(
        numbered("a", 1),
        &EventQuery::all(),
        Some(MAX_SEQUENCE_NUMBER + 1),
    );
    let Err(EventStoreError::InvalidInput { message }) = result else {
        panic!("expected InvalidInput, got {result:?}");
    };
    assert!(message.contains("expected_context_version"), "{message}");
    assert!(queried_sequence_numbers(&store, &EventQuery::all()).is_empty());
}
