//! The one random generator of the suite: proptest strategies for events,
//! queries and store operations, used by the differential model test
//! ([`crate::model`]) and by the memory store's index test.
//!
//! Values come from small sets, so that types, keys and scalars repeat
//! across events and queries and most queries match something; the rarer
//! values are the ones the matcher tells apart from the common ones
//! (integer and float, a number and its string, `0.0` and `-0.0`, case).

use factstr::{EventFilter, EventQuery, NewEvent};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A JSON scalar; `1`, `"x"` and `null` are the common ones.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![json!(1), json!("x"), json!(null)]),
        1 => prop::sample::select(vec![
            json!(1.0),
            json!(2),
            json!(-0.5),
            json!(-0.0),
            json!(0.0),
            json!(1e17),
            json!("1"),
            json!("a\"b"),
            json!(true),
        ]),
    ]
}

/// An event payload: a scalar, or objects and arrays of scalars in the
/// shapes predicates look into (keys `k`, `j`, `i`, `l`).
pub fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        scalar(),
        Just(json!({})),
        Just(json!([])),
        scalar().prop_map(|value| json!({ "k": value })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": [a, b, a] })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": { "i": a }, "j": b })),
        (scalar(), scalar()).prop_map(|(a, b)| json!([a, { "k": b }])),
        (scalar(), scalar(), scalar()).prop_map(|(a, b, c)| json!({ "k": a, "j": b, "l": [c] })),
    ]
}

/// A payload predicate: any payload, the empty object and array (which
/// match any object or array), and partial shapes of the payloads.
pub fn predicate() -> impl Strategy<Value = Value> {
    prop_oneof![
        payload(),
        Just(json!({})),
        Just(json!([])),
        Just(json!({ "k": [] })),
        Just(json!({ "k": {} })),
        scalar().prop_map(|value| json!({ "k": [value] })),
        scalar().prop_map(|value| json!({ "j": value })),
        scalar().prop_map(|value| json!({ "k": { "i": value } })),
        (scalar(), scalar()).prop_map(|(a, b)| json!({ "k": a, "j": b })),
    ]
}

/// An event type of appended events; `A` differs from `a` only in case.
pub fn event_type() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "A"]).prop_map(str::to_owned)
}

/// One event.
pub fn new_event() -> impl Strategy<Value = NewEvent> {
    (event_type(), payload()).prop_map(|(event_type, payload)| NewEvent::new(event_type, payload))
}

/// The events of one append: one to five.
pub fn batch() -> impl Strategy<Value = Vec<NewEvent>> {
    prop::collection::vec(new_event(), 1..6)
}

/// A filter: no, empty or some event types (an unknown one among them),
/// and no, empty or some payload predicates.
pub fn filter() -> impl Strategy<Value = EventFilter> {
    (
        prop::option::of(prop::collection::vec(
            prop_oneof![4 => event_type(), 1 => Just("unknown".to_owned())],
            0..3,
        )),
        prop::option::of(prop::collection::vec(predicate(), 0..3)),
    )
        .prop_map(|(event_types, payload_predicates)| EventFilter {
            event_types,
            payload_predicates,
        })
}

/// A query: mostly a list of filters (possibly empty), sometimes none;
/// sometimes a `min_sequence_number`, also beyond the log.
pub fn query() -> impl Strategy<Value = EventQuery> {
    (
        prop::option::weighted(0.85, prop::collection::vec(filter(), 0..3)),
        prop::option::of(0_u64..40),
    )
        .prop_map(|(filters, min_sequence_number)| EventQuery {
            filters,
            min_sequence_number,
        })
}

/// One step of the differential model test.
#[derive(Clone, Debug)]
pub enum Operation {
    /// `append(events)`.
    Append(Vec<NewEvent>),
    /// `append_if(events, context, version)`, where `version` is chosen
    /// relative to the context's current version when the step runs.
    AppendIf {
        events: Vec<NewEvent>,
        context: EventQuery,
        version: VersionChoice,
    },
    /// `query(query)`.
    Query(EventQuery),
    /// `query_page(query, limit)`.
    QueryPage { query: EventQuery, limit: usize },
}

/// Which version a conditional append expects, relative to the context's
/// current version.
#[derive(Clone, Copy, Debug)]
pub enum VersionChoice {
    /// The current version: wins.
    Current,
    /// This many versions before the current one (or none): conflicts
    /// unless the context is empty.
    Older(u64),
    /// No version: wins on an empty context only.
    Nothing,
    /// This exact version, whatever the context holds.
    Exactly(u64),
}

impl VersionChoice {
    /// The expected version this choice gives when the context's current
    /// version is `current`.
    pub fn expected(self, current: Option<u64>) -> Option<u64> {
        match self {
            Self::Current => current,
            Self::Older(back) => current.and_then(|version| version.checked_sub(back + 1)),
            Self::Nothing => None,
            Self::Exactly(version) => Some(version),
        }
    }
}

fn version_choice() -> impl Strategy<Value = VersionChoice> {
    prop_oneof![
        3 => Just(VersionChoice::Current),
        1 => (0_u64..4).prop_map(VersionChoice::Older),
        1 => Just(VersionChoice::Nothing),
        1 => (0_u64..40).prop_map(VersionChoice::Exactly),
    ]
}

/// One operation: appends, conditional appends, queries and pages.
pub fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => batch().prop_map(Operation::Append),
        3 => (batch(), query(), version_choice()).prop_map(|(events, context, version)| {
            Operation::AppendIf { events, context, version }
        }),
        3 => query().prop_map(Operation::Query),
        1 => (query(), 1_usize..4).prop_map(|(query, limit)| Operation::QueryPage { query, limit }),
    ]
}

/// A run of one to forty operations.
pub fn operations() -> impl Strategy<Value = Vec<Operation>> {
    prop::collection::vec(operation(), 1..40)
}
