//! DTOs survive round trips, and bad input becomes errors naming the field.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use chrono::{TimeZone, Utc};
use factstr::{
    AppendResult, EventFilter, EventQuery, EventRecord, EventStoreError, NewEvent, QueryResult,
};
use factstr_interop::*;
use serde_json::{Value, json};

fn record() -> EventRecord {
    EventRecord {
        sequence_number: 42,
        occurred_at: Utc.timestamp_micros(1_790_000_000_123_456).unwrap(),
        event_type: "deposited".into(),
        payload: json!({"amount": 1.0, "tags": ["a"]}),
    }
}

fn through_json<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

#[test]
fn records_round_trip_with_microsecond_rfc3339_times() {
    let dto = EventRecordDto::from(record());
    assert_eq!(dto.occurred_at, "2026-09-21T14:13:20.123456Z");
    let back = EventRecord::try_from(through_json(&dto)).unwrap();
    assert_eq!(back, record());
}

#[test]
fn query_results_and_queries_round_trip() {
    let result = QueryResult {
        event_records: vec![record()],
        last_returned_sequence_number: Some(42),
        current_context_version: Some(43),
    };
    let dto = through_json(&QueryResultDto::from(result.clone()));
    assert_eq!(QueryResult::try_from(dto).unwrap(), result);

    let query = EventQuery::all()
        .with_filters([
            EventFilter::for_event_types(["a"]).with_payload_predicates([json!({"k": 1})])
        ])
        .with_min_sequence_number(7);
    let dto = through_json(&EventQueryDto::from(query.clone()));
    assert_eq!(EventQuery::from(dto), query);
    let as_json = serde_json::to_value(EventQueryDto::from(query.clone())).unwrap();
    assert_eq!(decode_event_query(&as_json).unwrap(), query);
}

#[test]
fn append_results_new_events_and_outcomes_round_trip() {
    let result = AppendResult {
        first_sequence_number: 3,
        last_sequence_number: 5,
        committed_count: 3,
    };
    assert_eq!(
        AppendResult::from(through_json(&AppendResultDto::from(result.clone()))),
        result
    );
    let event = NewEvent::new("t", json!([1, {"x": null}]));
    assert_eq!(
        NewEvent::from(through_json(&NewEventDto::from(event.clone()))),
        event
    );

    let committed = AppendIfResultDto::from_outcome(Ok(result.clone())).unwrap();
    assert_eq!(committed.append_result, Some(result.into()));
    let conflict =
        AppendIfResultDto::from_outcome(Err(EventStoreError::ConditionalAppendConflict {
            expected: None,
            actual: Some(4),
        }))
        .unwrap();
    assert_eq!(
        conflict.conflict,
        Some(ConditionalAppendConflictDto {
            expected_context_version: None,
            actual_context_version: Some(4)
        })
    );
    assert_eq!(
        AppendIfResultDto::from_outcome(Err(EventStoreError::EmptyAppend)),
        Err(EventStoreError::EmptyAppend)
    );
}

#[test]
fn errors_round_trip_with_their_codes() {
    let errors = [
        EventStoreError::EmptyAppend,
        EventStoreError::ConditionalAppendConflict {
            expected: Some(1),
            actual: None,
        },
        EventStoreError::backend("disk gone"),
        EventStoreError::invalid_input("event 0 of the batch has an empty event_type"),
    ];
    for error in errors {
        let dto = through_json(&EventStoreErrorDto::from(&error));
        assert_eq!(dto.code, ErrorCode::of(&error));
        assert_eq!(EventStoreError::from(&dto), error);
    }
    let not_implemented = EventStoreError::NotImplemented {
        store: "x",
        operation: "y",
    };
    let dto = EventStoreErrorDto::from(&not_implemented);
    assert_eq!(dto.code.as_str(), "FACTSTR_NOT_IMPLEMENTED");
    assert_eq!(
        serde_json::to_value(dto.code).unwrap(),
        json!("FACTSTR_NOT_IMPLEMENTED")
    );
}

#[test]
fn a_bad_occurred_at_is_an_error_naming_the_field() {
    let mut dto = EventRecordDto::from(record());
    dto.occurred_at = "yesterday".into();
    let error = EventRecord::try_from(dto.clone()).unwrap_err();
    assert_eq!(error.field(), "occurred_at");
    assert!(error.problem().contains("yesterday"));
    let result = QueryResultDto {
        event_records: vec![dto],
        last_returned_sequence_number: None,
        current_context_version: None,
    };
    assert_eq!(
        QueryResult::try_from(result).unwrap_err().field(),
        "event_records[0].occurred_at"
    );
}

#[test]
fn negative_fractional_and_mistyped_sequence_numbers_name_their_field() {
    let cases: [(Value, &str, &str); 6] = [
        (
            json!({"min_sequence_number": -1}),
            "min_sequence_number",
            "negative",
        ),
        (
            json!({"min_sequence_number": 1.5}),
            "min_sequence_number",
            "whole",
        ),
        (
            json!({"min_sequence_number": -0.5}),
            "min_sequence_number",
            "negative",
        ),
        (
            json!({"min_sequence_number": "3"}),
            "min_sequence_number",
            "got a string",
        ),
        (
            json!({"min_sequence_number": 1e300}),
            "min_sequence_number",
            "whole",
        ),
        (
            json!({"filters": [{}, {"event_types": ["a", 1]}]}),
            "filters[1].event_types[1]",
            "string",
        ),
    ];
    for (input, field, problem) in cases {
        let error = decode_event_query(&input).unwrap_err();
        assert_eq!(error.field(), field, "{input}");
        assert!(error.problem().contains(problem), "{error}");
    }
    assert_eq!(
        decode_event_query(&json!({"min_sequence_number": 3.0}))
            .unwrap()
            .min_sequence_number,
        Some(3)
    );
    assert_eq!(decode_expected_context_version(&json!(null)).unwrap(), None);
    assert_eq!(decode_expected_context_version(&json!(9)).unwrap(), Some(9));
    assert_eq!(
        decode_expected_context_version(&json!(-9))
            .unwrap_err()
            .field(),
        "expected_context_version"
    );
}

#[test]
fn wrong_shapes_and_unknown_fields_are_refused_with_the_field() {
    assert_eq!(
        decode_new_events(&json!({"event_type": "a"}))
            .unwrap_err()
            .field(),
        "events"
    );
    assert_eq!(
        decode_new_events(&json!([{"payload": 1}]))
            .unwrap_err()
            .field(),
        "events[0].event_type"
    );
    assert_eq!(
        decode_new_events(&json!([{"event_type": "a"}, {"event_type": 3}]))
            .unwrap_err()
            .field(),
        "events[1].event_type"
    );
    assert_eq!(
        decode_new_events(&json!([{"event_type": "a", "payloda": 1}]))
            .unwrap_err()
            .field(),
        "events[0].payloda"
    );
    assert_eq!(
        decode_event_query(&json!({"eventTypes": ["a"]}))
            .unwrap_err()
            .field(),
        "eventTypes"
    );
    assert_eq!(
        decode_event_query(&json!({"filters": [{"event_types": ["a"], "x": 1}]}))
            .unwrap_err()
            .field(),
        "filters[0].x"
    );
    assert_eq!(decode_event_query(&json!([])).unwrap_err().field(), "query");
    assert_eq!(
        decode_event_query(&json!({"filters": {}}))
            .unwrap_err()
            .field(),
        "filters"
    );
    assert_eq!(
        decode_durable_stream_name(&json!(5)).unwrap_err().field(),
        "name"
    );
    let events =
        decode_new_events(&json!([{"event_type": "a"}, {"event_type": "b", "payload": null}]))
            .unwrap();
    assert_eq!(events[0].payload, Value::Null);
    assert_eq!(decode_event_query(&json!(null)).unwrap(), EventQuery::all());
    assert_eq!(
        decode_event_query(&json!({"filters": null, "min_sequence_number": null})).unwrap(),
        EventQuery::all()
    );
    let error: EventStoreError = decode_event_query(&json!({"filters": 1}))
        .unwrap_err()
        .into();
    assert!(
        matches!(error, EventStoreError::InvalidInput { ref message } if message.starts_with("filters:"))
    );
}

#[test]
fn batches_from_json_text_decode_like_values_and_name_fields_on_error() {
    let text = r#"[{"event_type":"a","payload":{"k":[1,1.0]}},{"event_type":"b"}]"#;
    let events = decode_new_events_json(text).unwrap();
    assert_eq!(
        events,
        vec![
            NewEvent::new("a", json!({"k": [1, 1.0]})),
            NewEvent::new("b", Value::Null)
        ]
    );
    assert_eq!(
        decode_new_events_json(r#"[{"event_type":"a"},{"event_type":1}]"#)
            .unwrap_err()
            .field(),
        "events[1].event_type"
    );
    assert_eq!(
        decode_new_events_json(r#"[{"event_type":"a","x":1}]"#)
            .unwrap_err()
            .field(),
        "events[0].x"
    );
    assert_eq!(
        decode_new_events_json(r#"{"event_type":"a"}"#)
            .unwrap_err()
            .field(),
        "events"
    );
    let error = decode_new_events_json("[{").unwrap_err();
    assert_eq!(error.field(), "events");
    assert!(error.problem().starts_with("not valid JSON"), "{error}");
}
