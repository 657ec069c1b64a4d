//! The input rules every store applies before touching its data, so that the
//! same input is accepted or refused the same way by every store.
//!
//! Refused with [`EventStoreError::InvalidInput`]:
//! - an event with an empty `event_type`, or one longer than
//!   [`MAX_EVENT_TYPE_BYTES`];
//! - a payload or payload predicate nesting arrays/objects deeper than
//!   [`MAX_PAYLOAD_DEPTH`] levels (it could not be read back by JSON readers);
//! - a `min_sequence_number` or `expected_context_version` above
//!   [`MAX_SEQUENCE_NUMBER`] (no store can reach such a sequence number);
//! - a durable stream with an empty name.
//!
//! Stores add what their backend cannot hold (PostgreSQL refuses NUL
//! characters in text and JSON).

use serde_json::Value;

use crate::{DurableStream, EventQuery, EventStoreError, NewEvent};

/// The greatest sequence number any store assigns (`i64::MAX`, the limit of
/// SQL integer columns).
pub const MAX_SEQUENCE_NUMBER: u64 = i64::MAX as u64;

/// The longest event type any store accepts, in UTF-8 bytes. The same for
/// every store, so a log can move between them: PostgreSQL's B-tree index on
/// event types cannot hold entries much above 2.7 KB, and a type is a name,
/// not data.
pub const MAX_EVENT_TYPE_BYTES: usize = 1024;

/// How deeply arrays and objects may nest in a payload or predicate:
/// `{"a": [1]}` nests 2 levels.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Checks a batch for `append`: `EmptyAppend` first, then every event.
pub fn validate_new_events(new_events: &[NewEvent]) -> Result<(), EventStoreError> {
    if new_events.is_empty() {
        return Err(EventStoreError::EmptyAppend);
    }
    for (index, event) in new_events.iter().enumerate() {
        if event.event_type.is_empty() {
            return Err(EventStoreError::invalid_input(format!(
                "event {index} of the batch has an empty event_type"
            )));
        }
        if event.event_type.len() > MAX_EVENT_TYPE_BYTES {
            let start: String = event.event_type.chars().take(32).collect();
            return Err(EventStoreError::invalid_input(format!(
                "event {index} of the batch has an event_type of {} bytes (`{start}...`); \
                 event types are at most {MAX_EVENT_TYPE_BYTES} bytes",
                event.event_type.len()
            )));
        }
        if exceeds_depth(&event.payload) {
            return Err(EventStoreError::invalid_input(format!(
                "the payload of event {index} of the batch (event_type `{}`) nests deeper than {MAX_PAYLOAD_DEPTH} levels",
                event.event_type
            )));
        }
    }
    Ok(())
}

/// Checks the arguments of `append_if`: `EmptyAppend` first, then the events,
/// the context query and the expected version.
pub fn validate_conditional_append(
    new_events: &[NewEvent],
    context_query: &EventQuery,
    expected_context_version: Option<u64>,
) -> Result<(), EventStoreError> {
    validate_new_events(new_events)?;
    validate_predicates(context_query)?;
    if let Some(expected) = expected_context_version
        && expected > MAX_SEQUENCE_NUMBER
    {
        return Err(EventStoreError::invalid_input(format!(
            "expected_context_version {expected} is above the greatest sequence number {MAX_SEQUENCE_NUMBER}"
        )));
    }
    Ok(())
}

/// Checks a query for `query`.
pub fn validate_query(query: &EventQuery) -> Result<(), EventStoreError> {
    if let Some(min) = query.min_sequence_number
        && min > MAX_SEQUENCE_NUMBER
    {
        return Err(EventStoreError::invalid_input(format!(
            "min_sequence_number {min} is above the greatest sequence number {MAX_SEQUENCE_NUMBER}"
        )));
    }
    validate_predicates(query)
}

/// Checks the limit of a page read (`query_page`): at least 1.
pub fn validate_page_limit(limit: usize) -> Result<(), EventStoreError> {
    crate::paging::check_limit(limit)
}

/// Checks a stream's query (its `min_sequence_number` is ignored).
pub fn validate_stream_query(query: &EventQuery) -> Result<(), EventStoreError> {
    validate_predicates(query)
}

/// Checks a durable stream's name.
pub fn validate_durable_stream(durable_stream: &DurableStream) -> Result<(), EventStoreError> {
    if durable_stream.name().is_empty() {
        return Err(EventStoreError::invalid_input(
            "durable stream name is empty",
        ));
    }
    Ok(())
}

fn validate_predicates(query: &EventQuery) -> Result<(), EventStoreError> {
    let predicates = query
        .filters
        .iter()
        .flatten()
        .filter_map(|filter| filter.payload_predicates.as_ref())
        .flatten();
    for predicate in predicates {
        if exceeds_depth(predicate) {
            return Err(EventStoreError::invalid_input(format!(
                "a payload predicate nests deeper than {MAX_PAYLOAD_DEPTH} levels"
            )));
        }
    }
    Ok(())
}

/// Whether `value` nests deeper than [`MAX_PAYLOAD_DEPTH`]. The recursion
/// stops at the limit, so a hostile value cannot exhaust the stack here, and
/// nothing is allocated (this runs for every appended event).
fn exceeds_depth(value: &Value) -> bool {
    nests_deeper_than(value, MAX_PAYLOAD_DEPTH)
}

fn nests_deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => {
            levels == 0 || items.iter().any(|item| nests_deeper_than(item, levels - 1))
        }
        Value::Object(entries) => {
            levels == 0
                || entries
                    .values()
                    .any(|entry| nests_deeper_than(entry, levels - 1))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() {
        assert!(!exceeds_depth(&nested(MAX_PAYLOAD_DEPTH)));
        assert!(exceeds_depth(&nested(MAX_PAYLOAD_DEPTH + 1)));
        assert!(!exceeds_depth(&json!(1)));
        assert!(!exceeds_depth(&json!({"a": [1, {"b": []}]})));
        assert!(exceeds_depth(
            &json!({"a": [1, nested(MAX_PAYLOAD_DEPTH - 1)]})
        ));
        assert!(!exceeds_depth(
            &json!({"a": [1, nested(MAX_PAYLOAD_DEPTH - 2)]})
        ));
    }

    #[test]
    fn the_deepest_accepted_payload_survives_a_json_round_trip() {
        let wrapped = json!({"event_records": [{"payload": nested(MAX_PAYLOAD_DEPTH)}]});
        let text = serde_json::to_string(&wrapped).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, wrapped);
    }

    #[test]
    fn empty_append_is_reported_before_anything_else() {
        assert_eq!(
            validate_conditional_append(&[], &EventQuery::all(), Some(u64::MAX)),
            Err(EventStoreError::EmptyAppend)
        );
    }
}
