use chrono::{DateTime, SecondsFormat, Utc};
use factstr::{
    AppendResult, EventFilter, EventQuery, EventRecord, EventStoreError, NewEvent, QueryResult,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::InteropError;

/// A [`NewEvent`] as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEventDto {
    /// The event type.
    pub event_type: String,
    /// The payload.
    #[serde(default)]
    pub payload: Value,
}

/// An [`EventRecord`] as data, with `occurred_at` as an RFC 3339 string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecordDto {
    /// Global sequence number.
    pub sequence_number: u64,
    /// Commit time, RFC 3339 in UTC with microseconds (`2026-01-02T03:04:05.123456Z`).
    pub occurred_at: String,
    /// The event type.
    pub event_type: String,
    /// The payload.
    pub payload: Value,
}

/// An [`EventFilter`] as data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilterDto {
    /// Accepted event types, or none for any.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Payload predicates, or none for any payload.
    #[serde(default)]
    pub payload_predicates: Option<Vec<Value>>,
}

/// An [`EventQuery`] as data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQueryDto {
    /// Alternatives; none or empty matches every event.
    #[serde(default)]
    pub filters: Option<Vec<EventFilterDto>>,
    /// Exclusive read cursor.
    #[serde(default)]
    pub min_sequence_number: Option<u64>,
}

/// A [`QueryResult`] as data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryResultDto {
    /// Matching records, ascending.
    pub event_records: Vec<EventRecordDto>,
    /// Sequence number of the last returned record.
    pub last_returned_sequence_number: Option<u64>,
    /// Greatest matching sequence number, ignoring the cursor.
    pub current_context_version: Option<u64>,
}

/// An [`AppendResult`] as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendResultDto {
    /// First sequence number of the batch.
    pub first_sequence_number: u64,
    /// Last sequence number of the batch.
    pub last_sequence_number: u64,
    /// Number of committed events.
    pub committed_count: u64,
}

/// The versions of a refused conditional append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionalAppendConflictDto {
    /// The version the caller expected.
    pub expected_context_version: Option<u64>,
    /// The version the store found.
    pub actual_context_version: Option<u64>,
}

/// The outcome of a conditional append where a conflict is a result, not an
/// error (the shape of the Node package's `appendIf`): exactly one of the two
/// fields is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendIfResultDto {
    /// Set when the batch was committed.
    #[serde(default)]
    pub append_result: Option<AppendResultDto>,
    /// Set when the context had changed.
    #[serde(default)]
    pub conflict: Option<ConditionalAppendConflictDto>,
}

impl AppendIfResultDto {
    /// Turns the result of `append_if` into an outcome: a conflict becomes
    /// `conflict`; any other error stays an error.
    pub fn from_outcome(
        outcome: Result<AppendResult, EventStoreError>,
    ) -> Result<Self, EventStoreError> {
        match outcome {
            Ok(result) => Ok(Self {
                append_result: Some(result.into()),
                conflict: None,
            }),
            Err(EventStoreError::ConditionalAppendConflict { expected, actual }) => Ok(Self {
                append_result: None,
                conflict: Some(ConditionalAppendConflictDto {
                    expected_context_version: expected,
                    actual_context_version: actual,
                }),
            }),
            Err(error) => Err(error),
        }
    }
}

/// Formats a commit time the way every adapter shows it: RFC 3339, UTC,
/// microseconds, `Z`.
pub fn format_occurred_at(occurred_at: &DateTime<Utc>) -> String {
    occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<NewEvent> for NewEventDto {
    fn from(event: NewEvent) -> Self {
        Self {
            event_type: event.event_type,
            payload: event.payload,
        }
    }
}

impl From<NewEventDto> for NewEvent {
    fn from(dto: NewEventDto) -> Self {
        NewEvent::new(dto.event_type, dto.payload)
    }
}

impl From<EventRecord> for EventRecordDto {
    fn from(record: EventRecord) -> Self {
        Self {
            sequence_number: record.sequence_number,
            occurred_at: format_occurred_at(&record.occurred_at),
            event_type: record.event_type,
            payload: record.payload,
        }
    }
}

impl TryFrom<EventRecordDto> for EventRecord {
    type Error = InteropError;

    fn try_from(dto: EventRecordDto) -> Result<Self, Self::Error> {
        let occurred_at = DateTime::parse_from_rfc3339(&dto.occurred_at)
            .map_err(|error| {
                InteropError::new(
                    "occurred_at",
                    format!("`{}` is not an RFC 3339 time: {error}", dto.occurred_at),
                )
            })?
            .with_timezone(&Utc);
        Ok(Self {
            sequence_number: dto.sequence_number,
            occurred_at,
            event_type: dto.event_type,
            payload: dto.payload,
        })
    }
}

impl From<EventFilter> for EventFilterDto {
    fn from(filter: EventFilter) -> Self {
        Self {
            event_types: filter.event_types,
            payload_predicates: filter.payload_predicates,
        }
    }
}

impl From<EventFilterDto> for EventFilter {
    fn from(dto: EventFilterDto) -> Self {
        Self {
            event_types: dto.event_types,
            payload_predicates: dto.payload_predicates,
        }
    }
}

impl From<EventQuery> for EventQueryDto {
    fn from(query: EventQuery) -> Self {
        Self {
            filters: query
                .filters
                .map(|filters| filters.into_iter().map(Into::into).collect()),
            min_sequence_number: query.min_sequence_number,
        }
    }
}

impl From<EventQueryDto> for EventQuery {
    fn from(dto: EventQueryDto) -> Self {
        Self {
            filters: dto
                .filters
                .map(|filters| filters.into_iter().map(Into::into).collect()),
            min_sequence_number: dto.min_sequence_number,
        }
    }
}

impl From<QueryResult> for QueryResultDto {
    fn from(result: QueryResult) -> Self {
        Self {
            event_records: result.event_records.into_iter().map(Into::into).collect(),
            last_returned_sequence_number: result.last_returned_sequence_number,
            current_context_version: result.current_context_version,
        }
    }
}

impl TryFrom<QueryResultDto> for QueryResult {
    type Error = InteropError;

    fn try_from(dto: QueryResultDto) -> Result<Self, Self::Error> {
        let event_records = dto
            .event_records
            .into_iter()
            .enumerate()
            .map(|(index, record)| {
                EventRecord::try_from(record).map_err(|error| {
                    InteropError::new(
                        format!("event_records[{index}].{}", error.field()),
                        error.problem(),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            event_records,
            last_returned_sequence_number: dto.last_returned_sequence_number,
            current_context_version: dto.current_context_version,
        })
    }
}

impl From<AppendResult> for AppendResultDto {
    fn from(result: AppendResult) -> Self {
        Self {
            first_sequence_number: result.first_sequence_number,
            last_sequence_number: result.last_sequence_number,
            committed_count: result.committed_count,
        }
    }
}

impl From<AppendResultDto> for AppendResult {
    fn from(dto: AppendResultDto) -> Self {
        Self {
            first_sequence_number: dto.first_sequence_number,
            last_sequence_number: dto.last_sequence_number,
            committed_count: dto.committed_count,
        }
    }
}
