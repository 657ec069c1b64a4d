//! The WHERE clause of a query: from an `EventQuery` to the SQL condition
//! that narrows the events table to candidate rows.
//!
//! The condition may let through rows that do not match (jsonb `@>` treats
//! `1` and `1.0` as equal and lets an array contain a scalar at the top
//! level), never the other way round: whatever matches the query satisfies
//! it. What matches is decided afterwards by `EventQuery::matches`.

use std::fmt::Write as _;

use factstr::{EventFilter, EventQuery};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use crate::rows::contains_nul;

/// The candidate rows of a query: a SQL condition over the events table and
/// the values it binds.
#[derive(Debug)]
pub(crate) struct Candidates {
    parts: Vec<FilterCondition>,
    /// No filter has payload predicates: every candidate row matches, so the
    /// payload need not be read to decide.
    exact: bool,
}

#[derive(Debug)]
struct FilterCondition {
    /// `None`: any type.
    event_types: Option<Vec<String>>,
    /// `None`: any payload; otherwise any of these jsonb documents contained.
    contained: Option<Vec<String>>,
}

impl Candidates {
    /// The candidates of `query`, or `None` when no stored event can match it
    /// (an empty type or predicate list, or only values PostgreSQL cannot
    /// hold, such as NUL characters).
    pub(crate) fn of(query: &EventQuery) -> Option<Self> {
        let Some(filters) = query.filters.as_ref().filter(|filters| !filters.is_empty()) else {
            return Some(Self::all());
        };
        let mut parts = Vec::with_capacity(filters.len());
        for filter in filters {
            match FilterCondition::of(filter) {
                FilterOutcome::Nothing => {}
                FilterOutcome::Everything => return Some(Self::all()),
                FilterOutcome::Narrowed(condition) => parts.push(condition),
            }
        }
        if parts.is_empty() {
            return None;
        }
        let exact = parts.iter().all(|part| part.contained.is_none());
        Some(Self { parts, exact })
    }

    fn all() -> Self {
        Self {
            parts: Vec::new(),
            exact: true,
        }
    }

    /// Whether every candidate row matches (the payload is not needed to decide).
    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }

    /// The condition, in parentheses, with placeholders numbered from
    /// `first_placeholder` on, in the order [`bind`](Self::bind) binds them.
    pub(crate) fn condition(&self, first_placeholder: usize) -> String {
        if self.parts.is_empty() {
            return "TRUE".to_owned();
        }
        let mut placeholder = first_placeholder;
        let mut sql = String::from("(");
        for (index, part) in self.parts.iter().enumerate() {
            if index > 0 {
                sql.push_str(" OR ");
            }
            sql.push('(');
            let mut terms = Vec::new();
            if let Some(types) = &part.event_types {
                terms.push(if types.len() == 1 {
                    format!("event_type = ${placeholder}")
                } else {
                    format!("event_type = ANY(${placeholder}::text[])")
                });
                placeholder += 1;
            }
            if let Some(documents) = &part.contained {
                let mut alternatives = String::from("(");
                for (index, _) in documents.iter().enumerate() {
                    if index > 0 {
                        alternatives.push_str(" OR ");
                    }
                    // The same expression as the GIN index, so the index applies.
                    let _ = write!(alternatives, "(payload::jsonb) @> ${placeholder}::jsonb");
                    placeholder += 1;
                }
                alternatives.push(')');
                terms.push(alternatives);
            }
            if terms.is_empty() {
                sql.push_str("TRUE");
            } else {
                sql.push_str(&terms.join(" AND "));
            }
            sql.push(')');
        }
        sql.push(')');
        sql
    }

    /// How many placeholders the condition uses.
    pub(crate) fn parameter_count(&self) -> usize {
        self.parts
            .iter()
            .map(|part| {
                usize::from(part.event_types.is_some())
                    + part.contained.as_ref().map_or(0, Vec::len)
            })
            .sum()
    }

    /// Binds the condition's values, in placeholder order.
    pub(crate) fn bind<'q>(
        &self,
        mut query: Query<'q, sqlx::Postgres, PgArguments>,
    ) -> Query<'q, sqlx::Postgres, PgArguments> {
        for part in &self.parts {
            if let Some(types) = &part.event_types {
                query = match types.as_slice() {
                    [single] => query.bind(single.clone()),
                    several => query.bind(several.to_vec()),
                };
            }
            for document in part.contained.iter().flatten() {
                query = query.bind(document.clone());
            }
        }
        query
    }
}

enum FilterOutcome {
    Nothing,
    Everything,
    Narrowed(FilterCondition),
}

impl FilterCondition {
    fn of(filter: &EventFilter) -> FilterOutcome {
        let event_types = match &filter.event_types {
            None => None,
            Some(types) => {
                // A type with a NUL character was refused at append: no
                // stored event has it.
                let storable: Vec<String> = types
                    .iter()
                    .filter(|event_type| !event_type.contains('\0'))
                    .cloned()
                    .collect();
                if storable.is_empty() {
                    return FilterOutcome::Nothing;
                }
                Some(storable)
            }
        };
        let contained = match &filter.payload_predicates {
            None => None,
            Some(predicates) => {
                // A predicate holding a NUL character needs an equal string
                // or key in the payload, and no stored payload has one.
                let storable: Vec<String> = predicates
                    .iter()
                    .filter(|predicate| !contains_nul(predicate))
                    .map(Value::to_string)
                    .collect();
                if storable.is_empty() {
                    return FilterOutcome::Nothing;
                }
                Some(storable)
            }
        };
        if event_types.is_none() && contained.is_none() {
            return FilterOutcome::Everything;
        }
        FilterOutcome::Narrowed(Self {
            event_types,
            contained,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn queries_matching_everything_need_no_condition() {
        for query in [EventQuery::all(), EventQuery::all().with_filters([])] {
            let candidates = Candidates::of(&query).unwrap();
            assert!(candidates.is_exact());
            assert_eq!(candidates.condition(1), "TRUE");
        }
        let with_open_filter = EventQuery::all()
            .with_filters([EventFilter::for_event_types(["a"]), EventFilter::default()]);
        assert_eq!(
            Candidates::of(&with_open_filter).unwrap().condition(1),
            "TRUE"
        );
    }

    #[test]
    fn filters_that_match_nothing_are_left_out() {
        assert!(Candidates::of(&EventQuery::for_event_types(Vec::<String>::new())).is_none());
        let only_nul = EventQuery::all().with_filters([
            EventFilter::for_event_types(["a\0"]),
            EventFilter::default().with_payload_predicates([json!({"k\0": 1})]),
            EventFilter::default().with_payload_predicates([]),
        ]);
        assert!(Candidates::of(&only_nul).is_none());
    }

    #[test]
    fn types_and_predicates_become_placeholders_in_bind_order() {
        let query = EventQuery::all().with_filters([
            EventFilter::for_event_types(["a"])
                .with_payload_predicates([json!({"k": 1}), json!([2])]),
            EventFilter::for_event_types(["b", "c"]),
        ]);
        let candidates = Candidates::of(&query).unwrap();
        assert!(!candidates.is_exact());
        assert_eq!(
            candidates.condition(3),
            "((event_type = $3 AND ((payload::jsonb) @> $4::jsonb OR (payload::jsonb) @> $5::jsonb)) \
             OR (event_type = ANY($6::text[])))"
        );
    }
}
