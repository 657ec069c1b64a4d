use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EventRecord;

/// One alternative of an [`EventQuery`]: an event-type part AND a payload part.
///
/// - `event_types: None` does not constrain the type; `Some([])` matches
///   nothing; otherwise the event's type must equal one of the listed types
///   (exact, case-sensitive).
/// - `payload_predicates: None` does not constrain the payload; `Some([])`
///   matches nothing; otherwise at least one predicate must match the payload
///   (see [`payload_matches`](crate::payload_matches)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Accepted event types, or `None` for any type.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Payload predicates, any of which must match, or `None` for any payload.
    #[serde(default)]
    pub payload_predicates: Option<Vec<Value>>,
}

impl EventFilter {
    /// A filter accepting events of any of `event_types`.
    pub fn for_event_types<I, T>(event_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            event_types: Some(event_types.into_iter().map(Into::into).collect()),
            payload_predicates: None,
        }
    }

    /// Sets the payload predicates (any of which must match), replacing any
    /// set before, as in factstr 0.5.2.
    ///
    /// ```
    /// use factstr::EventFilter;
    /// use serde_json::json;
    ///
    /// let filter = EventFilter::for_event_types(["deposited"])
    ///     .with_payload_predicates([json!({"account": "a1"})])
    ///     .with_payload_predicates([json!({"account": "a2"})]);
    /// assert_eq!(filter.payload_predicates, Some(vec![json!({"account": "a2"})]));
    /// ```
    pub fn with_payload_predicates<I>(mut self, payload_predicates: I) -> Self
    where
        I: IntoIterator<Item = Value>,
    {
        self.payload_predicates = Some(payload_predicates.into_iter().collect());
        self
    }
}

/// Which facts a query, a conditional append's context or a stream is about.
///
/// `filters: None` or `Some([])` matches every event; otherwise an event
/// matches when any filter matches. `min_sequence_number` is an exclusive
/// read cursor for [`EventStore::query`](crate::EventStore::query) and is
/// ignored by context versions and streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Alternatives (OR); `None` or empty matches every event.
    #[serde(default)]
    pub filters: Option<Vec<EventFilter>>,
    /// Only records with a greater sequence number are returned by `query`.
    #[serde(default)]
    pub min_sequence_number: Option<u64>,
}

impl EventQuery {
    /// A query matching every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// A query matching events of any of `event_types`.
    pub fn for_event_types<I, T>(event_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::all().with_filters([EventFilter::for_event_types(event_types)])
    }

    /// Sets the filters (alternatives, OR), replacing any set before, as in
    /// factstr 0.5.2: `EventQuery::for_event_types(["a"]).with_filters([b])`
    /// matches what `b` matches, not `a` or `b`.
    ///
    /// ```
    /// use factstr::{EventFilter, EventQuery};
    ///
    /// let query = EventQuery::for_event_types(["a"])
    ///     .with_filters([EventFilter::for_event_types(["b"])]);
    /// assert!(query.matches("b", &serde_json::json!({})));
    /// assert!(!query.matches("a", &serde_json::json!({})));
    /// ```
    pub fn with_filters<I>(mut self, filters: I) -> Self
    where
        I: IntoIterator<Item = EventFilter>,
    {
        self.filters = Some(filters.into_iter().collect());
        self
    }

    /// Sets the exclusive read cursor, replacing any set before: `query`
    /// returns only records with a greater sequence number.
    pub fn with_min_sequence_number(mut self, min_sequence_number: u64) -> Self {
        self.min_sequence_number = Some(min_sequence_number);
        self
    }
}

/// What [`EventStore::query`](crate::EventStore::query) returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Matching records after `min_sequence_number`, in ascending sequence order.
    pub event_records: Vec<EventRecord>,
    /// Sequence number of the last returned record; `None` when none was returned.
    pub last_returned_sequence_number: Option<u64>,
    /// Greatest sequence number of all records matching the filters, ignoring
    /// `min_sequence_number`; `None` when nothing matches. Pass it to
    /// [`EventStore::append_if`](crate::EventStore::append_if).
    pub current_context_version: Option<u64>,
}

/// What a successful append returns: the sequence range of the committed batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Sequence number of the batch's first event.
    pub first_sequence_number: u64,
    /// Sequence number of the batch's last event.
    pub last_sequence_number: u64,
    /// Number of events committed: `last - first + 1`.
    pub committed_count: u64,
}
