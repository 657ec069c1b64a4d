//! Bounded reads: `query_page` and `query_pages`.

use factstr::{EventQuery, EventStore, EventStoreError};
use serde_json::json;

use crate::support::{event, numbered, sequence_numbers};

pub fn a_page_holds_at_most_the_limit_and_the_next_continues_after_it<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 5)).unwrap();
    store.append(numbered("b", 2)).unwrap();
    let first = store.query_page(&EventQuery::all(), 3).unwrap();
    assert_eq!(sequence_numbers(&first.event_records), vec![1, 2, 3]);
    assert_eq!(first.last_returned_sequence_number, Some(3));
    assert_eq!(first.current_context_version, Some(7));
    let second = store
        .query_page(&EventQuery::all().with_min_sequence_number(3), 3)
        .unwrap();
    assert_eq!(sequence_numbers(&second.event_records), vec![4, 5, 6]);
    let last = store
        .query_page(&EventQuery::all().with_min_sequence_number(6), 3)
        .unwrap();
    assert_eq!(sequence_numbers(&last.event_records), vec![7]);
    let beyond = store
        .query_page(&EventQuery::all().with_min_sequence_number(7), 3)
        .unwrap();
    assert!(beyond.event_records.is_empty());
    assert_eq!(beyond.last_returned_sequence_number, None);
    assert_eq!(beyond.current_context_version, Some(7));
}

pub fn pages_of_a_filtered_query_agree_with_the_whole_query<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    for n in 0..30 {
        let kind = if n % 3 == 0 { "deposited" } else { "withdrawn" };
        store
            .append(vec![
                event(kind, json!({ "account": format!("a{}", n % 4), "n": n })),
                event("noise", json!({ "n": n })),
            ])
            .unwrap();
    }
    let query = EventQuery::all()
        .with_filters([factstr::EventFilter::for_event_types(["deposited"])
            .with_payload_predicates([json!({"account": "a0"}), json!({"account": "a1"})])]);
    let whole = store.query(&query).unwrap();
    for page_size in [1, 2, 3, 100] {
        let mut read = Vec::new();
        for page in store.query_pages(&query, page_size) {
            let page = page.unwrap();
            assert!(page.event_records.len() <= page_size);
            assert_eq!(page.current_context_version, whole.current_context_version);
            read.extend(page.event_records);
        }
        assert_eq!(read, whole.event_records, "page size {page_size}");
    }
}

pub fn query_pages_of_nothing_yield_no_page<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let query = EventQuery::for_event_types(["missing"]);
    assert_eq!(store.query_pages(&query, 10).count(), 0);
    let page = store.query_page(&query, 10).unwrap();
    assert!(page.event_records.is_empty());
    assert_eq!(page.current_context_version, None);
}

pub fn a_page_limit_of_zero_is_invalid_input<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    let result = store.query_page(&EventQuery::all(), 0);
    assert!(
        matches!(result, Err(EventStoreError::InvalidInput { .. })),
        "{result:?}"
    );
}

pub fn a_page_context_version_guards_a_conditional_append<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 5)).unwrap();
    let context = EventQuery::for_event_types(["a"]);
    let page = store.query_page(&context, 2).unwrap();
    assert_eq!(page.current_context_version, Some(5));
    store
        .append_if(numbered("a", 1), &context, page.current_context_version)
        .unwrap();
    let stale = store.append_if(numbered("a", 1), &context, page.current_context_version);
    assert!(
        matches!(
            stale,
            Err(EventStoreError::ConditionalAppendConflict { .. })
        ),
        "{stale:?}"
    );
}
