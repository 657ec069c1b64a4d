//! Decoding loosely typed input (JSON-like values handed over by another
//! language) into contract values, naming the field at fault.
//!
//! `null` stands for "absent" wherever a field is optional. Unknown fields
//! are refused: a misspelt `eventTypes` silently ignored would widen a
//! query, and with it the context of a conditional append.

use factstr::{EventFilter, EventQuery, NewEvent};
use serde_json::{Map, Value};

use crate::{InteropError, NewEventDto};

/// Decodes a batch: an array of `{ event_type, payload }` objects (`payload`
/// may be absent or null).
pub fn decode_new_events(value: &Value) -> Result<Vec<NewEvent>, InteropError> {
    let Value::Array(items) = value else {
        return Err(InteropError::new(
            "events",
            expected("an array of events", value),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("events[{index}]");
            let fields = object(item, &path, &["event_type", "payload"])?;
            let event_type = match fields.get("event_type") {
                Some(Value::String(event_type)) => event_type.clone(),
                other => {
                    return Err(InteropError::new(
                        format!("{path}.event_type"),
                        expected("a string", other.unwrap_or(&Value::Null)),
                    ));
                }
            };
            let payload = fields.get("payload").cloned().unwrap_or(Value::Null);
            Ok(NewEvent::new(event_type, payload))
        })
        .collect()
}

/// Decodes a batch given as JSON text: the same rules and errors as
/// [`decode_new_events`], read straight into the events when the text is
/// well-formed (the common case, and several times faster than going through
/// a `Value`).
pub fn decode_new_events_json(text: &str) -> Result<Vec<NewEvent>, InteropError> {
    match serde_json::from_str::<Vec<NewEventDto>>(text) {
        Ok(events) => Ok(events.into_iter().map(NewEvent::from).collect()),
        Err(_) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|error| InteropError::new("events", format!("not valid JSON: {error}")))?;
            decode_new_events(&value)
        }
    }
}

/// Decodes a query: `{ filters?, min_sequence_number? }`; `null` is the
/// query matching everything.
pub fn decode_event_query(value: &Value) -> Result<EventQuery, InteropError> {
    if value.is_null() {
        return Ok(EventQuery::all());
    }
    let fields = object(value, "query", &["filters", "min_sequence_number"])?;
    let filters = match fields.get("filters") {
        None | Some(Value::Null) => None,
        Some(Value::Array(filters)) => Some(
            filters
                .iter()
                .enumerate()
                .map(|(index, filter)| decode_filter(filter, &format!("filters[{index}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(InteropError::new(
                "filters",
                expected("an array of filters or null", other),
            ));
        }
    };
    let min_sequence_number = match fields.get("min_sequence_number") {
        None | Some(Value::Null) => None,
        Some(number) => Some(sequence_number(number, "min_sequence_number")?),
    };
    Ok(EventQuery {
        filters,
        min_sequence_number,
    })
}

/// Decodes an expected context version: a non-negative whole number, or
/// `null` for "nothing may match".
pub fn decode_expected_context_version(value: &Value) -> Result<Option<u64>, InteropError> {
    match value {
        Value::Null => Ok(None),
        number => sequence_number(number, "expected_context_version").map(Some),
    }
}

/// Decodes a durable stream name (any string; the store refuses empty ones).
pub fn decode_durable_stream_name(value: &Value) -> Result<String, InteropError> {
    match value {
        Value::String(name) => Ok(name.clone()),
        other => Err(InteropError::new("name", expected("a string", other))),
    }
}

fn decode_filter(value: &Value, path: &str) -> Result<EventFilter, InteropError> {
    let fields = object(value, path, &["event_types", "payload_predicates"])?;
    let event_types = match fields.get("event_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(types)) => Some(
            types
                .iter()
                .enumerate()
                .map(|(index, event_type)| match event_type {
                    Value::String(event_type) => Ok(event_type.clone()),
                    other => Err(InteropError::new(
                        format!("{path}.event_types[{index}]"),
                        expected("a string", other),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(InteropError::new(
                format!("{path}.event_types"),
                expected("an array of strings or null", other),
            ));
        }
    };
    let payload_predicates = match fields.get("payload_predicates") {
        None | Some(Value::Null) => None,
        Some(Value::Array(predicates)) => Some(predicates.clone()),
        Some(other) => {
            return Err(InteropError::new(
                format!("{path}.payload_predicates"),
                expected("an array of JSON values or null", other),
            ));
        }
    };
    Ok(EventFilter {
        event_types,
        payload_predicates,
    })
}

fn object<'a>(
    value: &'a Value,
    path: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, InteropError> {
    let Value::Object(fields) = value else {
        return Err(InteropError::new(path, expected("an object", value)));
    };
    if let Some(unknown) = fields.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(InteropError::new(
            if path == "query" {
                unknown.clone()
            } else {
                format!("{path}.{unknown}")
            },
            format!("unknown field; expected one of: {}", known.join(", ")),
        ));
    }
    Ok(fields)
}

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE_FLOAT_INTEGER: f64 = 9_007_199_254_740_991.0;

fn sequence_number(value: &Value, field: &str) -> Result<u64, InteropError> {
    let Value::Number(number) = value else {
        return Err(InteropError::new(
            field,
            expected("a non-negative whole number", value),
        ));
    };
    if let Some(unsigned) = number.as_u64() {
        return Ok(unsigned);
    }
    if number.as_i64().is_some() {
        return Err(InteropError::new(
            field,
            format!("must not be negative, got {number}"),
        ));
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && (0.0..=MAX_SAFE_FLOAT_INTEGER).contains(&float) => {
            // Exact: a whole, non-negative float within 2^53.
            Ok(float as u64)
        }
        Some(float) if float < 0.0 => Err(InteropError::new(
            field,
            format!("must not be negative, got {number}"),
        )),
        _ => Err(InteropError::new(
            field,
            format!("must be a whole number, got {number}"),
        )),
    }
}

fn expected(what: &str, got: &Value) -> String {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("expected {what}, got {kind}")
}
