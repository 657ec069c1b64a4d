//! Results as JSON envelopes for the JS layer: `{"ok": value}` or
//! `{"error": {code, message, ...}}`. Sequence numbers are written as decimal
//! strings so that JS can turn them into exact `bigint`s; payloads are plain
//! JSON, so they arrive in JS exactly as `JSON.parse` would give them.

use factstr::{AppendResult, EventRecord, EventStoreError, QueryResult, StreamStopReason};
use factstr_interop::{AppendIfResultDto, EventStoreErrorDto, format_occurred_at};
use serde_json::Value;

pub(crate) fn ok_unit() -> String {
    r#"{"ok":null}"#.to_owned()
}

pub(crate) fn ok_stream_id(id: i64) -> String {
    format!(r#"{{"ok":{{"id":"{id}"}}}}"#)
}

pub(crate) fn ok_append(result: &AppendResult) -> String {
    let mut out = String::from(r#"{"ok":"#);
    push_append_result(&mut out, result);
    out.push('}');
    out
}

pub(crate) fn ok_append_if(result: &AppendIfResultDto) -> String {
    let mut out = String::from(r#"{"ok":{"#);
    if let Some(committed) = &result.append_result {
        out.push_str(r#""append_result":"#);
        push_append_result(
            &mut out,
            &AppendResult {
                first_sequence_number: committed.first_sequence_number,
                last_sequence_number: committed.last_sequence_number,
                committed_count: committed.committed_count,
            },
        );
    }
    if let Some(conflict) = &result.conflict {
        out.push_str(r#""conflict":{"expected_context_version":"#);
        push_optional_number(&mut out, conflict.expected_context_version);
        out.push_str(r#","actual_context_version":"#);
        push_optional_number(&mut out, conflict.actual_context_version);
        out.push('}');
    }
    out.push_str("}}");
    out
}

pub(crate) fn ok_query(result: &QueryResult) -> String {
    let mut out = String::with_capacity(64 + result.event_records.len() * 128);
    out.push_str(r#"{"ok":{"event_records":"#);
    push_records(&mut out, &result.event_records);
    out.push_str(r#","last_returned_sequence_number":"#);
    push_optional_number(&mut out, result.last_returned_sequence_number);
    out.push_str(r#","current_context_version":"#);
    push_optional_number(&mut out, result.current_context_version);
    out.push_str("}}");
    out
}

/// Why a stream stopped: `{"ok":{"reason":...}}` with `first_sequence_number`
/// and `message` where the reason has them.
pub(crate) fn stopped(reason: &StreamStopReason) -> String {
    let mut out = String::from(r#"{"ok":{"reason":"#);
    match reason {
        StreamStopReason::Unsubscribed => out.push_str(r#""unsubscribed""#),
        StreamStopReason::StoreClosed => out.push_str(r#""store_closed""#),
        StreamStopReason::HandlerFailed {
            first_sequence_number,
            message,
        } => {
            out.push_str(r#""handler_failed","first_sequence_number":"#);
            push_number(&mut out, *first_sequence_number);
            out.push_str(r#","message":"#);
            push_json(&mut out, &Value::String(message.clone()));
        }
        StreamStopReason::ReadFailed { message } => {
            out.push_str(r#""read_failed","message":"#);
            push_json(&mut out, &Value::String(message.clone()));
        }
        // A reason added to the core after this addon: its text still tells why.
        other => {
            out.push_str(r#""other","message":"#);
            push_json(&mut out, &Value::String(other.to_string()));
        }
    }
    out.push_str("}}");
    out
}

/// A committed batch as a JSON array of records (what a handler receives).
pub(crate) fn batch(records: &[EventRecord]) -> String {
    let mut out = String::with_capacity(2 + records.len() * 128);
    push_records(&mut out, records);
    out
}

pub(crate) fn error(error: &EventStoreError) -> String {
    let dto = EventStoreErrorDto::from(error);
    let mut out = String::from(r#"{"error":{"code":"#);
    push_json(&mut out, &Value::String(dto.code.as_str().to_owned()));
    out.push_str(r#","message":"#);
    push_json(&mut out, &Value::String(dto.message));
    out.push_str(r#","expected_context_version":"#);
    push_optional_number(&mut out, dto.expected_context_version);
    out.push_str(r#","actual_context_version":"#);
    push_optional_number(&mut out, dto.actual_context_version);
    out.push_str("}}");
    out
}

fn push_append_result(out: &mut String, result: &AppendResult) {
    out.push_str(r#"{"first_sequence_number":"#);
    push_number(out, result.first_sequence_number);
    out.push_str(r#","last_sequence_number":"#);
    push_number(out, result.last_sequence_number);
    out.push_str(r#","committed_count":"#);
    push_number(out, result.committed_count);
    out.push('}');
}

fn push_records(out: &mut String, records: &[EventRecord]) {
    out.push('[');
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(r#"{"sequence_number":"#);
        push_number(out, record.sequence_number);
        out.push_str(r#","occurred_at":""#);
        out.push_str(&format_occurred_at(&record.occurred_at));
        out.push_str(r#"","event_type":"#);
        push_json(out, &Value::String(record.event_type.clone()));
        out.push_str(r#","payload":"#);
        push_json(out, &record.payload);
        out.push('}');
    }
    out.push(']');
}

fn push_number(out: &mut String, number: u64) {
    out.push('"');
    out.push_str(&number.to_string());
    out.push('"');
}

fn push_optional_number(out: &mut String, number: Option<u64>) {
    match number {
        Some(number) => push_number(out, number),
        None => out.push_str("null"),
    }
}

fn push_json(out: &mut String, value: &Value) {
    // Serializing a serde_json::Value into a String cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()));
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_are_json_with_sequence_numbers_as_strings() {
        let record = EventRecord {
            sequence_number: u64::MAX,
            occurred_at: Utc.timestamp_micros(1_000_001).unwrap(),
            event_type: "a\"b".into(),
            payload: json!({"x": [1, 1.5, "\u{1F389}"]}),
        };
        let result = QueryResult {
            event_records: vec![record],
            last_returned_sequence_number: Some(u64::MAX),
            current_context_version: None,
        };
        let parsed: Value = serde_json::from_str(&ok_query(&result)).unwrap();
        assert_eq!(
            parsed,
            json!({"ok": {
                "event_records": [{
                    "sequence_number": "18446744073709551615",
                    "occurred_at": "1970-01-01T00:00:01.000001Z",
                    "event_type": "a\"b",
                    "payload": {"x": [1, 1.5, "\u{1F389}"]}
                }],
                "last_returned_sequence_number": "18446744073709551615",
                "current_context_version": null
            }})
        );
        let conflict = EventStoreError::ConditionalAppendConflict {
            expected: None,
            actual: Some(3),
        };
        let parsed: Value = serde_json::from_str(&error(&conflict)).unwrap();
        assert_eq!(
            parsed["error"]["code"],
            "FACTSTR_CONDITIONAL_APPEND_CONFLICT"
        );
        assert_eq!(parsed["error"]["actual_context_version"], "3");
    }

    #[test]
    fn stop_reasons_are_json_with_their_details() {
        let failed = StreamStopReason::HandlerFailed {
            first_sequence_number: 7,
            message: "no \"disk\"".into(),
        };
        let parsed: Value = serde_json::from_str(&stopped(&failed)).unwrap();
        assert_eq!(
            parsed,
            json!({"ok": {"reason": "handler_failed", "first_sequence_number": "7", "message": "no \"disk\""}})
        );
        let parsed: Value = serde_json::from_str(&stopped(&StreamStopReason::StoreClosed)).unwrap();
        assert_eq!(parsed, json!({"ok": {"reason": "store_closed"}}));
        let read = StreamStopReason::ReadFailed {
            message: "gone".into(),
        };
        let parsed: Value = serde_json::from_str(&stopped(&read)).unwrap();
        assert_eq!(
            parsed,
            json!({"ok": {"reason": "read_failed", "message": "gone"}})
        );
    }
}
