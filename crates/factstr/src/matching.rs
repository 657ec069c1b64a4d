//! The one implementation of query and payload matching. Stores may narrow
//! candidates with their own indexes, but what matches is decided here.

use serde_json::Value;

use crate::{EventFilter, EventQuery, EventRecord};

impl EventQuery {
    /// Whether an event of `event_type` with `payload` matches this query's
    /// filters. `min_sequence_number` is not considered.
    pub fn matches(&self, event_type: &str, payload: &Value) -> bool {
        match &self.filters {
            None => true,
            Some(filters) if filters.is_empty() => true,
            Some(filters) => filters
                .iter()
                .any(|filter| filter.matches(event_type, payload)),
        }
    }

    /// Whether `record` matches this query's filters (`min_sequence_number` is
    /// not considered).
    pub fn matches_record(&self, record: &EventRecord) -> bool {
        self.matches(&record.event_type, &record.payload)
    }

    /// Whether this query matches every event (no filters, or an empty list).
    pub fn matches_everything(&self) -> bool {
        self.filters.as_ref().is_none_or(Vec::is_empty)
    }
}

impl EventFilter {
    /// Whether an event of `event_type` with `payload` matches this filter:
    /// its type part AND its payload part.
    pub fn matches(&self, event_type: &str, payload: &Value) -> bool {
        let type_matches = match &self.event_types {
            None => true,
            Some(types) => types.iter().any(|accepted| accepted == event_type),
        };
        type_matches
            && match &self.payload_predicates {
                None => true,
                Some(predicates) => predicates
                    .iter()
                    .any(|predicate| payload_matches(predicate, payload)),
            }
    }
}

/// Recursive subset match of a payload predicate against a payload.
///
/// - scalars (null, bool, string, number) must be equal; numbers compare as
///   `serde_json` numbers do, so `1` does not match `1.0`;
/// - an object predicate matches an object payload that has every predicate
///   key with a matching value (extra keys are fine; `{}` matches any object;
///   `{"k": null}` needs `k` present and null);
/// - an array predicate matches an array payload when every predicate element
///   matches some payload element (order-insensitive; `[]` matches any array);
/// - any type mismatch does not match.
///
/// ```
/// use factstr::payload_matches;
/// use serde_json::json;
///
/// assert!(payload_matches(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
/// assert!(!payload_matches(&json!({"a": 1}), &json!({"a": 1.0})));
/// assert!(payload_matches(&json!({"tags": ["x"]}), &json!({"tags": ["y", "x"]})));
/// assert!(!payload_matches(&json!({"tags": "x"}), &json!({"tags": ["x"]})));
/// ```
pub fn payload_matches(predicate: &Value, payload: &Value) -> bool {
    match (predicate, payload) {
        (Value::Object(wanted), Value::Object(present)) => wanted.iter().all(|(key, wanted)| {
            present
                .get(key)
                .is_some_and(|present| payload_matches(wanted, present))
        }),
        (Value::Array(wanted), Value::Array(present)) => wanted.iter().all(|wanted| {
            present
                .iter()
                .any(|present| payload_matches(wanted, present))
        }),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (wanted, present) => wanted == present,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_match_only_equal_scalars_of_the_same_number_kind() {
        assert!(payload_matches(&json!(1), &json!(1)));
        assert!(!payload_matches(&json!(1), &json!(1.0)));
        assert!(!payload_matches(&json!(1.0), &json!(1)));
        assert!(!payload_matches(&json!("1"), &json!(1)));
        assert!(payload_matches(&json!(null), &json!(null)));
        assert!(!payload_matches(&json!(null), &json!(false)));
        assert!(payload_matches(&json!(true), &json!(true)));
    }

    #[test]
    fn object_predicates_are_recursive_subsets() {
        let payload = json!({"a": {"b": 1, "c": [1, 2]}, "d": null});
        assert!(payload_matches(&json!({}), &payload));
        assert!(payload_matches(&json!({"a": {}}), &payload));
        assert!(payload_matches(&json!({"a": {"b": 1}}), &payload));
        assert!(payload_matches(&json!({"d": null}), &payload));
        assert!(!payload_matches(&json!({"e": null}), &payload));
        assert!(!payload_matches(&json!({"a": {"b": 2}}), &payload));
        assert!(!payload_matches(&json!({}), &json!([])));
        assert!(!payload_matches(&json!({}), &json!(1)));
    }

    #[test]
    fn array_predicates_need_every_element_somewhere() {
        let payload = json!([{"id": 1, "x": 1}, {"id": 2}, 3]);
        assert!(payload_matches(&json!([]), &payload));
        assert!(payload_matches(&json!([3, {"id": 1}]), &payload));
        assert!(payload_matches(&json!([{"id": 2}, {"id": 2}]), &payload));
        assert!(!payload_matches(&json!([4]), &payload));
        assert!(!payload_matches(&json!([]), &json!({})));
        assert!(!payload_matches(&json!(3), &payload));
    }

    #[test]
    fn filters_combine_types_and_predicates() {
        let filter = EventFilter::for_event_types(["a", "b"])
            .with_payload_predicates([json!({"k": 1}), json!({"k": 2})]);
        assert!(filter.matches("a", &json!({"k": 2})));
        assert!(!filter.matches("A", &json!({"k": 2})));
        assert!(!filter.matches("a", &json!({"k": 3})));
        assert!(!EventFilter::for_event_types(Vec::<String>::new()).matches("a", &json!({})));
        assert!(
            !EventFilter::default()
                .with_payload_predicates([])
                .matches("a", &json!({}))
        );
        assert!(EventFilter::default().matches("a", &json!(null)));
    }

    #[test]
    fn queries_or_their_filters_and_empty_filters_match_all() {
        assert!(EventQuery::all().matches("x", &json!(1)));
        assert!(EventQuery::all().with_filters([]).matches("x", &json!(1)));
        let query = EventQuery::all().with_filters([
            EventFilter::for_event_types(["a"]),
            EventFilter::for_event_types(["b"]),
        ]);
        assert!(query.matches("a", &json!(1)));
        assert!(query.matches("b", &json!(1)));
        assert!(!query.matches("c", &json!(1)));
    }
}
