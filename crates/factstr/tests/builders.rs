//! Every builder of `EventQuery` and `EventFilter` sets (replaces) its part,
//! as in factstr 0.5.2: a later call never adds to an earlier one.

use factstr::{EventFilter, EventQuery};
use serde_json::json;

#[test]
fn for_event_types_sets_one_filter_of_those_types() {
    assert_eq!(
        EventQuery::for_event_types(["a", "b"]),
        EventQuery {
            filters: Some(vec![EventFilter {
                event_types: Some(vec!["a".to_owned(), "b".to_owned()]),
                payload_predicates: None,
            }]),
            min_sequence_number: None,
        }
    );
    assert_eq!(
        EventFilter::for_event_types(["a"]),
        EventFilter {
            event_types: Some(vec!["a".to_owned()]),
            payload_predicates: None,
        }
    );
}

#[test]
fn all_matches_everything_without_filters() {
    assert_eq!(EventQuery::all(), EventQuery::default());
    assert_eq!(EventQuery::all().filters, None);
}

#[test]
fn with_filters_replaces_the_filters_set_before() {
    let b = EventFilter::for_event_types(["b"]);
    let query = EventQuery::for_event_types(["a"]).with_filters([b.clone()]);
    assert_eq!(query.filters, Some(vec![b.clone()]));

    let c = EventFilter::for_event_types(["c"]);
    let twice = EventQuery::all()
        .with_filters([b])
        .with_filters([c.clone()]);
    assert_eq!(twice.filters, Some(vec![c]));

    let emptied = EventQuery::for_event_types(["a"]).with_filters([]);
    assert_eq!(emptied.filters, Some(Vec::new()));
}

#[test]
fn with_filters_keeps_the_min_sequence_number() {
    let query = EventQuery::all()
        .with_min_sequence_number(7)
        .with_filters([EventFilter::for_event_types(["a"])]);
    assert_eq!(query.min_sequence_number, Some(7));
}

#[test]
fn with_payload_predicates_replaces_the_predicates_set_before() {
    let filter = EventFilter::for_event_types(["a"])
        .with_payload_predicates([json!({"k": 1}), json!({"k": 2})])
        .with_payload_predicates([json!({"k": 3})]);
    assert_eq!(filter.payload_predicates, Some(vec![json!({"k": 3})]));
    assert_eq!(filter.event_types, Some(vec!["a".to_owned()]));

    let emptied = EventFilter::default()
        .with_payload_predicates([json!(1)])
        .with_payload_predicates([]);
    assert_eq!(emptied.payload_predicates, Some(Vec::new()));
}

#[test]
fn with_min_sequence_number_replaces_the_cursor_set_before() {
    let query = EventQuery::for_event_types(["a"])
        .with_min_sequence_number(3)
        .with_min_sequence_number(9);
    assert_eq!(query.min_sequence_number, Some(9));
    assert_eq!(query.filters, EventQuery::for_event_types(["a"]).filters);
}
