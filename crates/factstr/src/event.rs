use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A fact to append: its type and its JSON payload.
///
/// The store assigns the sequence number and the commit time when the batch
/// containing it commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The kind of fact, for example `"account-opened"`. Must not be empty.
    pub event_type: String,
    /// Any JSON value: object, array, scalar or null.
    pub payload: Value,
}

impl NewEvent {
    /// Creates a new event of `event_type` carrying `payload`.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_type: event_type.into(),
            payload,
        }
    }
}

/// A committed fact as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Global position in the log: starts at 1, no gaps.
    pub sequence_number: u64,
    /// Commit time in UTC, truncated to whole microseconds; shared by all
    /// events of one committed batch.
    pub occurred_at: DateTime<Utc>,
    /// The event type given at append.
    pub event_type: String,
    /// The payload given at append, unchanged.
    pub payload: Value,
}
