//! The boundary between FACTSTR and other languages: serde DTOs for every
//! value type and error, conversions both ways that never panic, and decoders
//! that turn loosely typed input (JSON-like values from JavaScript) into
//! contract types with errors naming the offending field.
//!
//! Field names are snake_case, as in Rust. `occurred_at` is an RFC 3339 string
//! with microseconds. Sequence numbers are unsigned integers; adapters decide
//! how to represent them (the Node package uses `bigint`).
//!
//! ```
//! use factstr_interop::{decode_event_query, EventRecordDto};
//! use serde_json::json;
//!
//! let query = decode_event_query(&json!({
//!     "filters": [{"event_types": ["deposited"], "payload_predicates": [{"account": "a1"}]}],
//!     "min_sequence_number": 3
//! }))?;
//! assert_eq!(query.min_sequence_number, Some(3));
//!
//! let error = decode_event_query(&json!({"filters": [{"event_types": "deposited"}]})).unwrap_err();
//! assert_eq!(error.field(), "filters[0].event_types");
//! # Ok::<(), factstr_interop::InteropError>(())
//! ```
#![forbid(unsafe_code)]

mod decode;
mod dto;
mod error;

pub use decode::{
    decode_durable_stream_name, decode_event_query, decode_expected_context_version,
    decode_new_events, decode_new_events_json,
};
pub use dto::{
    AppendIfResultDto, AppendResultDto, ConditionalAppendConflictDto, EventFilterDto,
    EventQueryDto, EventRecordDto, NewEventDto, QueryResultDto, format_occurred_at,
};
pub use error::{ErrorCode, EventStoreErrorDto, InteropError};
