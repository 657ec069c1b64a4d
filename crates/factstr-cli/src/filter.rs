//! `--type` and `--where` as an `EventQuery`, and JSON options parsed with
//! their position in errors.

use factstr::{EventFilter, EventQuery};
use serde_json::Value;

use crate::cli::FilterArgs;
use crate::failure::Failure;

/// Parses the JSON `text` given as `source` (an option's name).
pub(crate) fn parse_json(source: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|error| Failure::json(source, &error))
}

/// The query of `filter`: one filter whose event-type part is any of the
/// `--type`s and whose payload part is any of the `--where`s (each part
/// unconstrained when not given); everything when neither is given.
pub(crate) fn event_query(filter: &FilterArgs) -> Result<EventQuery, Failure> {
    if filter.types.is_empty() && filter.predicates.is_empty() {
        return Ok(EventQuery::all());
    }
    let predicates = filter
        .predicates
        .iter()
        .map(|text| parse_json("--where", text))
        .collect::<Result<Vec<_>, _>>()?;
    let event_filter = EventFilter {
        event_types: (!filter.types.is_empty()).then(|| filter.types.clone()),
        payload_predicates: (!predicates.is_empty()).then_some(predicates),
    };
    Ok(EventQuery::all().with_filters([event_filter]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn types_and_predicates_are_alternatives_within_one_filter() {
        let filter = FilterArgs {
            types: vec!["a".to_owned(), "b".to_owned()],
            predicates: vec![r#"{"k":1}"#.to_owned()],
        };
        let query = event_query(&filter).unwrap();
        assert_eq!(
            query,
            EventQuery::all()
                .with_filters([EventFilter::for_event_types(["a", "b"])
                    .with_payload_predicates([json!({"k": 1})])])
        );
        let none = FilterArgs {
            types: vec![],
            predicates: vec![],
        };
        assert_eq!(event_query(&none).unwrap(), EventQuery::all());
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let message = parse_json("--where", "{\n  \"k\": }")
            .unwrap_err()
            .to_string();
        assert!(message.contains("--where at line 2 column 8"), "{message}");
    }
}
