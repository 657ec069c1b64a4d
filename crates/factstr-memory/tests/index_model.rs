//! The memory store's indexes against a full scan: random logs and queries,
//! where every answer (records, pages, context versions, conditional
//! appends) must equal what the shared matcher finds by reading every
//! record.

#![allow(clippy::unwrap_used)]

use factstr::{EventFilter, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent};
use factstr_conformance::random;
use factstr_memory::MemoryStore;
use proptest::prelude::*;
use serde_json::json;

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

/// Appends `batches` to a fresh store and checks every answer to
/// `queries` against a full scan.
fn indexed_answers_agree_with_a_scan(
    batches: Vec<Vec<NewEvent>>,
    queries: &[EventQuery],
    page: usize,
) -> Result<(), TestCaseError> {
    let store = MemoryStore::new();
    for batch in batches {
        store.append(batch).unwrap();
    }
    let log = store.query(&EventQuery::all()).unwrap().event_records;
    for query in queries {
        let (expected, newest) = scanned(&log, query);
        let result = store.query(query).unwrap();
        let returned: Vec<u64> = result
            .event_records
            .iter()
            .map(|record| record.sequence_number)
            .collect();
        prop_assert_eq!(&returned, &expected, "query {:?}", query);
        prop_assert_eq!(result.current_context_version, newest, "query {:?}", query);
        for record in &result.event_records {
            prop_assert_eq!(record, &log[(record.sequence_number - 1) as usize]);
        }

        let paged = store.query_page(query, page).unwrap();
        let paged: Vec<u64> = paged
            .event_records
            .iter()
            .map(|record| record.sequence_number)
            .collect();
        prop_assert_eq!(&paged[..], &expected[..expected.len().min(page)]);

        let stale = newest.map_or(Some(u64::MAX >> 2), |newest| newest.checked_sub(1));
        let conflict = store.append_if(vec![NewEvent::new("z", json!(0))], query, stale);
        let is_conflict = matches!(
            conflict,
            Err(EventStoreError::ConditionalAppendConflict { .. })
        );
        prop_assert!(is_conflict, "{:?}", conflict);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn indexed_answers_equal_a_full_scan(
        batches in prop::collection::vec(random::batch(), 1..24),
        queries in prop::collection::vec(random::query(), 1..8),
        page in 1_usize..4,
    ) {
        indexed_answers_agree_with_a_scan(batches, &queries, page)?;
    }
}

/// Logs and queries the random test once found the index getting wrong.
#[test]
fn indexed_answers_equal_a_full_scan_in_cases_found_before() {
    let event = |event_type: &str, payload| vec![NewEvent::new(event_type, payload)];
    let predicates = |event_types: Option<&[&str]>, predicates| EventFilter {
        event_types: event_types.map(|types| types.iter().map(|&t| t.to_owned()).collect()),
        payload_predicates: Some(predicates),
    };
    let cases = [
        // A key under several types' objects, one nesting deeper.
        (
            vec![
                event("b", json!({"j": 1, "k": 1, "l": [1]})),
                event("c", json!({"j": 1, "k": 1, "l": [1]})),
                event("a", json!({"j": 1, "k": {"i": 1}})),
            ],
            vec![EventQuery::all().with_filters([predicates(None, vec![json!({"j": 1})])])],
        ),
        // Empty and one-element array predicates over arrays holding nulls.
        (
            vec![
                event("c", json!({"k": [null, 1, null]})),
                event("a", json!({"k": [1, null, 1]})),
                event("c", json!([1, {"k": 1}])),
            ],
            vec![EventQuery::all().with_filters([
                predicates(Some(&["c"]), vec![json!({"k": []})]),
                predicates(None, vec![json!({"k": [null]})]),
            ])],
        ),
    ];
    for (batches, queries) in cases {
        if let Err(failure) = indexed_answers_agree_with_a_scan(batches, &queries, 1) {
            panic!("{failure}");
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
