//! Append: sequence numbers, empty and invalid batches, commit times, payloads.

use chrono::{Duration, Timelike, Utc};
use factstr::backend::validation::MAX_PAYLOAD_DEPTH;
use factstr::{EventQuery, EventStore, EventStoreError};
use serde_json::{Value, json};

use crate::support::{event, numbered, queried_sequence_numbers, sequence_numbers};

pub fn appends_get_consecutive_sequence_numbers_starting_at_one<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let first = store.append(numbered("a", 1)).unwrap();
    let second = store.append(numbered("b", 3)).unwrap();
    let third = store.append(numbered("a", 2)).unwrap();
    assert_eq!(
        (first.first_sequence_number, first.last_sequence_number),
        (1, 1)
    );
    assert_eq!(
        (second.first_sequence_number, second.last_sequence_number),
        (2, 4)
    );
    assert_eq!(
        (third.first_sequence_number, third.last_sequence_number),
        (5, 6)
    );
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::all()),
        vec![1, 2, 3, 4, 5, 6]
    );
}

pub fn append_returns_the_committed_range_and_count<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 2)).unwrap();
    let result = store.append(numbered("a", 5)).unwrap();
    assert_eq!(result.first_sequence_number, 3);
    assert_eq!(result.last_sequence_number, 7);
    assert_eq!(result.committed_count, 5);
}

pub fn empty_append_is_refused_with_empty_append<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    assert_eq!(store.append(vec![]), Err(EventStoreError::EmptyAppend));
    assert_eq!(
        store
            .append(numbered("a", 1))
            .unwrap()
            .first_sequence_number,
        1
    );
}

pub fn empty_conditional_append_is_refused_before_the_context_is_checked<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    // The expected version is wrong and the query is out of range: the empty
    // batch is still what gets reported.
    let query = EventQuery::all().with_min_sequence_number(u64::MAX);
    assert_eq!(
        store.append_if(vec![], &query, Some(99)),
        Err(EventStoreError::EmptyAppend)
    );
    assert_eq!(
        store.append_if(vec![], &EventQuery::all(), None),
        Err(EventStoreError::EmptyAppend)
    );
    assert_eq!(
        queried_sequence_numbers(&store, &EventQuery::all()),
        vec![1]
    );
}

pub fn events_of_one_batch_share_one_commit_time<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 4)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    store.append(numbered("a", 1)).unwrap();
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert!(
        records[..4]
            .iter()
            .all(|record| record.occurred_at == records[0].occurred_at)
    );
    assert!(records[4].occurred_at > records[0].occurred_at);
}

pub fn commit_time_is_utc_truncated_to_microseconds<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let before = Utc::now() - Duration::seconds(5);
    for _ in 0..20 {
        store.append(numbered("a", 1)).unwrap();
    }
    let after = Utc::now() + Duration::seconds(5);
    for record in store.query(&EventQuery::all()).unwrap().event_records {
        assert_eq!(record.occurred_at.nanosecond() % 1_000, 0, "{record:?}");
        assert!(
            record.occurred_at > before && record.occurred_at < after,
            "{record:?}"
        );
    }
}

pub fn payloads_of_every_json_kind_read_back_unchanged<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let payloads: Vec<Value> = vec![
        json!({"account": "a1", "amount": 10, "nested": {"list": [1, "two", null, true]}}),
        json!([1, 2, [3, {"four": 4}]]),
        json!("a string with \"quotes\", \\ and unicode: Grüße 🎉"),
        json!(42),
        json!(-7),
        json!(1.0),
        json!(0.1),
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(true),
        json!(null),
        json!({}),
        json!([]),
        json!({"": "empty key", "k": {"": []}}),
    ];
    let events = payloads
        .iter()
        .map(|payload| event("kind", payload.clone()))
        .collect();
    store.append(events).unwrap();
    let read: Vec<Value> = store
        .query(&EventQuery::all())
        .unwrap()
        .event_records
        .into_iter()
        .map(|record| record.payload)
        .collect();
    assert_eq!(read, payloads);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert!(records.iter().all(|record| record.event_type == "kind"));
}

pub fn empty_event_type_is_invalid_input_and_writes_nothing<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let result = store.append(vec![event("", json!({}))]);
    let Err(EventStoreError::InvalidInput { message }) = result else {
        panic!("expected InvalidInput, got {result:?}");
    };
    assert!(message.contains("event_type"), "{message}");
    let result = store.append_if(vec![event("", json!({}))], &EventQuery::all(), None);
    assert!(
        matches!(result, Err(EventStoreError::InvalidInput { .. })),
        "{result:?}"
    );
    assert!(
        store
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            .is_empty()
    );
}

pub fn invalid_event_anywhere_in_a_batch_writes_nothing_of_it<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    let store = new_store();
    let batch = vec![
        event("a", json!(1)),
        event("b", json!(2)),
        event("", json!(3)),
    ];
    assert!(matches!(
        store.append(batch),
        Err(EventStoreError::InvalidInput { .. })
    ));
    assert!(
        store
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            .is_empty()
    );
}

pub fn too_deeply_nested_payload_is_invalid_input<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let nested = |levels: usize| (0..levels).fold(json!("leaf"), |inner, _| json!({ "k": inner }));
    let result = store.append(vec![event("deep", nested(MAX_PAYLOAD_DEPTH + 1))]);
    let Err(EventStoreError::InvalidInput { message }) = result else {
        panic!("expected InvalidInput, got {result:?}");
    };
    assert!(message.contains("payload"), "{message}");
    assert!(
        store
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            .is_empty()
    );

    let deepest = nested(MAX_PAYLOAD_DEPTH);
    store.append(vec![event("deep", deepest.clone())]).unwrap();
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records[0].payload, deepest);
}

pub fn event_type_longer_than_the_shared_limit_is_invalid_input<S: EventStore>(
    new_store: &dyn Fn() -> S,
) {
    use factstr::backend::validation::MAX_EVENT_TYPE_BYTES;
    let store = new_store();
    // Multi-byte characters: the limit counts UTF-8 bytes.
    let longest = "é".repeat(MAX_EVENT_TYPE_BYTES / 2);
    store.append(vec![event(&longest, json!(1))]).unwrap();
    let too_long = format!("{longest}x");
    for result in [
        store.append(vec![event("fine", json!(1)), event(&too_long, json!(2))]),
        store.append_if(
            vec![event(&too_long, json!(2))],
            &EventQuery::all(),
            Some(1),
        ),
    ] {
        let Err(EventStoreError::InvalidInput { message }) = result else {
            panic!("expected InvalidInput, got {result:?}");
        };
        assert!(message.contains("event_type"), "{message}");
        assert!(
            message.contains(&MAX_EVENT_TYPE_BYTES.to_string()),
            "{message}"
        );
    }
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event_type, longest);
}

pub fn failed_append_consumes_no_sequence_number<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    store.append(numbered("a", 1)).unwrap();
    let _ = store.append(vec![event("", json!(null))]);
    let _ = store.append(vec![]);
    let _ = store.append_if(numbered("a", 1), &EventQuery::all(), None);
    let next = store.append(numbered("a", 1)).unwrap();
    assert_eq!(next.first_sequence_number, 2);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(sequence_numbers(&records), vec![1, 2]);
}
