//! The memory store's indexes against a full scan: random logs and queries,
//! where every answer (records, pages, context versions, conditional
//! appends) must equal what the shared matcher finds by reading every
//! record.

#![allow(clippy::unwrap_used)]

use factstr::{EventFilter, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent};
use factstr_memory::MemoryStore;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Few values, so that terms repeat across events and types; the rarer
/// ones tell apart what the matcher tells apart.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![json!(1), json!("x"), json!(null)]),
        1 => prop::sample::select(vec![
            json!(1.0),
            json!(-0.0),
            json!(0.0),
            json!("1"),
            json!("a\"b"),
            json!(true),
        ]),
    ]
}

fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        scalar(),
        scalar().prop_map(|value| json!({ "k": value })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": [a, b, a] })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": { "i": a }, "j": b })),
        (scalar(), scalar()).prop_map(|(a, b)| json!([a, { "k": b }])),
        (scalar(), scalar(), scalar()).prop_map(|(a, b, c)| json!({ "k": a, "j": b, "l": [c] })),
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
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": a, "j": b })),
    ]
}

fn event_type() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned)
}

fn batch() -> impl Strategy<Value = Vec<NewEvent>> {
    prop::collection::vec(
        (event_type(), payload())
            .prop_map(|(event_type, payload)| NewEvent::new(event_type, payload)),
        1..6,
    )
}

fn filter() -> impl Strategy<Value = EventFilter> {
    (
        prop::option::of(prop::collection::vec(
            prop_oneof![event_type(), Just("unknown".to_owned())],
            0..3,
        )),
        prop::option::of(prop::collection::vec(predicate(), 0..3)),
    )
        .prop_map(|(event_types, payload_predicates)| EventFilter {
            event_types,
            payload_predicates,
        })
}

fn query() -> impl Strategy<Value = EventQuery> {
    (
        prop::option::weighted(0.9, prop::collection::vec(filter(), 0..3)),
        prop::option::of(0_u64..40),
    )
        .prop_map(|(filters, min_sequence_number)| EventQuery {
            filters,
            min_sequence_number,
        })
}

/// What a full scan finds: the matching records after the cursor, and the
/// newest match in the whole log.
fn scanned(log: &[EventRecord], query: &EventQuery) -> (Vec<u64>, Option<u64>) {
    let after = query.min_sequence_number.unwrap_or(0);
    let matching: Vec<u64> = log
        .iter()
        .filter(|record| query.matches_record(record))
        .map(|record| record.sequence_number)
        .collect();
    let returned = matching.iter().copied().filter(|&s| s > after).collect();
    (returned, matching.last().copied())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn indexed_answers_equal_a_full_scan(
        batches in prop::collection::vec(batch(), 1..24),
        queries in prop::collection::vec(query(), 1..8),
        page in 1_usize..4,
    ) {
        let store = MemoryStore::new();
        for batch in batches {
            store.append(batch).unwrap();
        }
        let log = store.query(&EventQuery::all()).unwrap().event_records;
        for query in &queries {
            let (expected, newest) = scanned(&log, query);
            let result = store.query(query).unwrap();
            let returned: Vec<u64> =
                result.event_records.iter().map(|record| record.sequence_number).collect();
            prop_assert_eq!(&returned, &expected, "query {:?}", query);
            prop_assert_eq!(result.current_context_version, newest, "query {:?}", query);
            for record in &result.event_records {
                prop_assert_eq!(record, &log[(record.sequence_number - 1) as usize]);
            }

            let paged = store.query_page(query, page).unwrap();
            let paged: Vec<u64> =
                paged.event_records.iter().map(|record| record.sequence_number).collect();
            prop_assert_eq!(&paged[..], &expected[..expected.len().min(page)]);

            let stale = newest.map_or(Some(u64::MAX >> 2), |newest| newest.checked_sub(1));
            let conflict = store.append_if(vec![NewEvent::new("z", json!(0))], query, stale);
            let is_conflict = matches!(
                conflict,
                Err(EventStoreError::ConditionalAppendConflict { .. })
            );
            prop_assert!(is_conflict, "{:?}", conflict);
        }
    }
}

#[test]
fn a_context_whose_newest_match_is_far_back_is_still_found() {
    let store = MemoryStore::new();
    store
        .append(vec![NewEvent::new("a", json!({"k": 1, "j": 2}))])
        .unwrap();
    for number in 0..1_000 {
        store
            .append(vec![NewEvent::new("a", json!({"k": 1, "j": number + 10}))])
            .unwrap();
    }
    let context = EventQuery::all()
        .with_filters([EventFilter::default().with_payload_predicates([json!({"k": 1, "j": 2})])]);
    assert_eq!(
        store.query(&context).unwrap().current_context_version,
        Some(1)
    );
    store
        .append_if(
            vec![NewEvent::new("a", json!({"k": 1, "j": 2}))],
            &context,
            Some(1),
        )
        .unwrap();
    assert_eq!(
        store.query(&context).unwrap().current_context_version,
        Some(1_002)
    );
}
