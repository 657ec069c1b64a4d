//! Where the events that may match a query are: choosing the candidate
//! sources of an [`EventQuery`], and reading their candidates.
//!
//! SQL only narrows: every candidate is decided by
//! [`EventQuery::matches`], the one implementation of matching. A filter
//! listing event types without predicates reads the type index. A filter
//! with payload predicates reads the FTS5 payload index (see
//! [`crate::index`]) for one token per predicate, that of its rarest term,
//! restricted to the filter's types through the events table; when the
//! filter's types hold fewer events than those tokens, it reads the type
//! index instead. A filter that neither can narrow makes the read scan the
//! log.

use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::to_stored;
use factstr::{EventQuery, EventStoreError};
use rusqlite::{Connection, ToSql, params};

use crate::error::SqliteResultExt;
use crate::sql::{self, Direction};
use crate::{index, rows};

/// How many candidates of a token or type are counted when choosing the
/// narrowest source; beyond it they count as equally common.
const POSTINGS_COUNT_CAP: i64 = 128;

/// Where the events that may match a query are found.
#[derive(Debug)]
pub(crate) enum Plan {
    /// No filter can match anything.
    Nothing,
    /// Every event matches; nothing needs deciding.
    Everything,
    /// Some filter cannot be narrowed: every event is a candidate.
    Scan,
    /// The union of these indexed candidate sets holds every match.
    Indexed(Vec<Source>),
}

/// One indexed candidate set.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Source {
    kind: SourceKind,
    /// Every candidate matches the query (an event type listed by a filter
    /// without predicates), so the newest candidate is the newest match.
    exact: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum SourceKind {
    /// Events of one type, from `factstr_events_by_type`.
    EventType(String),
    /// Events whose payload index document matches `expression` (one or
    /// more tokens joined by `OR`), of `event_types` only when given; and
    /// every event (of those types) after `unindexed_after`, when the
    /// newest events are not in the payload index yet.
    Tokens {
        expression: String,
        event_types: Option<Vec<String>>,
        unindexed_after: Option<u64>,
    },
}

/// Decides where the candidates of `query` are.
pub(crate) fn plan(connection: &Connection, query: &EventQuery) -> Result<Plan, EventStoreError> {
    let Some(filters) = query.filters.as_ref().filter(|filters| !filters.is_empty()) else {
        return Ok(Plan::Everything);
    };
    let mut sources = Sources::default();
    let mut scan = false;
    // Read once, when a filter has payload predicates.
    let mut unindexed: Option<Option<u64>> = None;
    for filter in filters {
        let types = filter.event_types.as_deref().map(distinct);
        if types.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let Some(predicates) = &filter.payload_predicates else {
            match types {
                // This filter matches every event, so the query does.
                None => return Ok(Plan::Everything),
                Some(types) => sources.add_types(&types, true),
            }
            continue;
        };
        let unindexed_after = match unindexed {
            Some(unindexed_after) => unindexed_after,
            None => *unindexed.insert(index::unindexed_after(connection)?),
        };
        let term_sets: Vec<Vec<String>> = predicates.iter().map(payload_terms).collect();
        if term_sets.iter().any(Vec::is_empty) {
            // `{}`, `[]` and the like: no term to look up, so every event
            // of the filter's types is a candidate.
            match types {
                None => scan = true,
                Some(types) => sources.add_types(&types, false),
            }
            continue;
        }
        if term_sets.is_empty() {
            // `Some([])`: the filter matches nothing.
            continue;
        }
        // Every term of a matching predicate is a term of the payload, so
        // the events holding the token of any one term of each predicate
        // hold every match; the rarest term gives the fewest candidates.
        // Counted up to the cap, the tokens can only hold fewer events than
        // the filter's types when those hold fewer than the cap per
        // predicate; only then are predicates of one term counted too.
        let type_candidates = match &types {
            Some(types) => Some(type_postings(connection, types)?),
            None => None,
        };
        let count_single = type_candidates
            .is_some_and(|count| count < POSTINGS_COUNT_CAP.saturating_mul(term_sets.len() as i64));
        let mut tokens: Vec<String> = Vec::with_capacity(term_sets.len());
        let mut token_candidates = 0;
        for terms in &term_sets {
            let Some((token, candidates)) =
                rarest_token(connection, terms, count_single, unindexed_after.is_none())?
            else {
                // A term no event holds: this predicate matches nothing.
                continue;
            };
            if !tokens.contains(&token) {
                token_candidates += candidates;
                tokens.push(token);
            }
        }
        if tokens.is_empty() {
            // No predicate can match.
            continue;
        }
        if let (Some(types), Some(type_candidates)) = (&types, type_candidates)
            && type_candidates < token_candidates
        {
            // The filter's types hold fewer events than its tokens.
            sources.add_types(types, false);
            continue;
        }
        sources.add(
            SourceKind::Tokens {
                expression: tokens.join(" OR "),
                event_types: types,
                unindexed_after,
            },
            false,
        );
    }
    Ok(if scan {
        Plan::Scan
    } else if sources.0.is_empty() {
        Plan::Nothing
    } else {
        Plan::Indexed(sources.0)
    })
}

/// The sources of a plan being built, each kind once.
#[derive(Default)]
struct Sources(Vec<Source>);

impl Sources {
    fn add(&mut self, kind: SourceKind, exact: bool) {
        match self.0.iter_mut().find(|known| known.kind == kind) {
            Some(known) => known.exact |= exact,
            None => self.0.push(Source { kind, exact }),
        }
    }

    fn add_types(&mut self, types: &[String], exact: bool) {
        for event_type in types {
            self.add(SourceKind::EventType(event_type.clone()), exact);
        }
    }
}

/// The token of the term of `terms` held by the fewest events (counted up
/// to [`POSTINGS_COUNT_CAP`]) and that count; `None` when some term is held
/// by no event, so nothing can match (known only when `all_indexed`: an
/// event not in the payload index yet may hold it). A single term is not
/// counted unless `count_single` (its count is then 0).
fn rarest_token(
    connection: &Connection,
    terms: &[String],
    count_single: bool,
    all_indexed: bool,
) -> Result<Option<(String, i64)>, EventStoreError> {
    if let [term] = terms
        && !count_single
    {
        return Ok(Some((index::token(term), 0)));
    }
    let mut rarest: Option<(String, i64)> = None;
    for term in terms {
        let token = index::token(term);
        let count = token_postings(connection, &token)?;
        if count == 0 && all_indexed {
            return Ok(None);
        }
        if rarest.as_ref().is_none_or(|(_, fewest)| count < *fewest) {
            rarest = Some((token, count));
        }
    }
    Ok(rarest)
}

/// How many events hold `token`, counted up to [`POSTINGS_COUNT_CAP`].
fn token_postings(connection: &Connection, token: &str) -> Result<i64, EventStoreError> {
    connection
        .prepare_cached(sql::TOKEN_COUNT)
        .and_then(|mut statement| {
            statement.query_row(params![token, POSTINGS_COUNT_CAP], |row| row.get(0))
        })
        .or_failed("counting payload index postings")
}

/// How many events have one of `types`, counted up to
/// [`POSTINGS_COUNT_CAP`] per type.
fn type_postings(connection: &Connection, types: &[String]) -> Result<i64, EventStoreError> {
    let counting = "counting events by type";
    let mut statement = connection
        .prepare_cached(sql::TYPE_COUNT)
        .or_failed(counting)?;
    let mut total = 0;
    for event_type in types {
        total += statement
            .query_row(params![event_type, POSTINGS_COUNT_CAP], |row| {
                row.get::<_, i64>(0)
            })
            .or_failed(counting)?;
    }
    Ok(total)
}

/// `items` without repetitions, in their first order.
fn distinct(items: &[String]) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !distinct.contains(item) {
            distinct.push(item.clone());
        }
    }
    distinct
}

impl Source {
    /// Whether every candidate of this source matches the query.
    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }

    /// The candidates in `after < s <= through`, ascending, at most `limit`
    /// of them.
    pub(crate) fn candidates(
        &self,
        connection: &Connection,
        after: u64,
        through: u64,
        limit: Option<usize>,
    ) -> Result<Vec<u64>, EventStoreError> {
        let mut candidates = Vec::new();
        self.visit(
            connection,
            after,
            through,
            Direction::Ascending,
            limit,
            |sequence_number| {
                candidates.push(sequence_number);
                Ok(true)
            },
        )?;
        Ok(candidates)
    }

    /// Calls `visit` with the candidates in `after < s <= through`, in
    /// `direction`, at most `limit` of them, until it returns `false`.
    pub(crate) fn visit(
        &self,
        connection: &Connection,
        after: u64,
        through: u64,
        direction: Direction,
        limit: Option<usize>,
        mut visit: impl FnMut(u64) -> Result<bool, EventStoreError>,
    ) -> Result<(), EventStoreError> {
        let mut limit = limit.unwrap_or(usize::MAX);
        let typed_sql;
        let (statement_sql, key, event_types, unindexed_after): (
            &str,
            &str,
            &[String],
            Option<u64>,
        ) = match &self.kind {
            SourceKind::EventType(event_type) => {
                (sql::type_candidates(direction), event_type, &[], None)
            }
            SourceKind::Tokens {
                expression,
                event_types: None,
                unindexed_after,
            } => (
                sql::token_candidates(direction),
                expression,
                &[],
                *unindexed_after,
            ),
            SourceKind::Tokens {
                expression,
                event_types: Some(event_types),
                unindexed_after,
            } => {
                typed_sql = sql::token_candidates_of_types(direction, event_types.len());
                (
                    typed_sql.as_str(),
                    expression,
                    event_types,
                    *unindexed_after,
                )
            }
        };
        // The events not in the payload index yet are all candidates:
        // they come after the indexed ones.
        let Some(indexed_through) = unindexed_after.filter(|&indexed| indexed < through) else {
            visit_rows(
                connection,
                statement_sql,
                Some(key),
                (after, through),
                event_types,
                limit,
                &mut visit,
            )?;
            return Ok(());
        };
        let indexed = (after, indexed_through.max(after));
        let unindexed = (indexed_through.max(after), through);
        let unindexed_sql = sql::unindexed_candidates(direction, event_types.len());
        let (first, second) = match direction {
            Direction::Ascending => (
                (statement_sql, Some(key), indexed),
                (unindexed_sql.as_str(), None, unindexed),
            ),
            Direction::Descending => (
                (unindexed_sql.as_str(), None, unindexed),
                (statement_sql, Some(key), indexed),
            ),
        };
        for (statement_sql, key, range) in [first, second] {
            if range.0 >= range.1 {
                continue;
            }
            let (visited, stopped) = visit_rows(
                connection,
                statement_sql,
                key,
                range,
                event_types,
                limit,
                &mut visit,
            )?;
            limit -= visited;
            if stopped || limit == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// Runs a candidate read (`key` bound as `?1` when given, the bounds of
/// `range` and the limit after it, then `event_types`) and calls `visit`
/// with each sequence number; returns how many it visited and whether
/// `visit` stopped the read.
fn visit_rows(
    connection: &Connection,
    statement_sql: &str,
    key: Option<&str>,
    range: (u64, u64),
    event_types: &[String],
    limit: usize,
    visit: &mut impl FnMut(u64) -> Result<bool, EventStoreError>,
) -> Result<(usize, bool), EventStoreError> {
    let reading = "reading indexed candidates";
    let (after, through) = (to_stored(range.0), to_stored(range.1));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement_params: Vec<&dyn ToSql> = Vec::with_capacity(4 + event_types.len());
    if let Some(key) = &key {
        statement_params.push(key as &dyn ToSql);
    }
    statement_params.extend([&after as &dyn ToSql, &through, &limit]);
    statement_params.extend(
        event_types
            .iter()
            .map(|event_type| event_type as &dyn ToSql),
    );
    let mut statement = connection
        .prepare_cached(statement_sql)
        .or_failed(reading)?;
    let mut rows = statement
        .query(statement_params.as_slice())
        .or_failed(reading)?;
    let mut visited = 0;
    while let Some(row) = rows.next().or_failed(reading)? {
        let sequence_number = rows::sequence_number(row.get(0).or_failed(reading)?)?;
        visited += 1;
        if !visit(sequence_number)? {
            return Ok((visited, true));
        }
    }
    Ok((visited, false))
}

/// The sorted, distinct candidates of all `sources` in `after < s <= through`.
pub(crate) fn union_of_candidates(
    connection: &Connection,
    sources: &[Source],
    after: u64,
    through: u64,
) -> Result<Vec<u64>, EventStoreError> {
    let mut candidates = Vec::new();
    for source in sources {
        candidates.extend(source.candidates(connection, after, through, None)?);
    }
    Ok(sorted_distinct(candidates))
}

/// `sequence_numbers` ascending, each once.
pub(crate) fn sorted_distinct(mut sequence_numbers: Vec<u64>) -> Vec<u64> {
    sequence_numbers.sort_unstable();
    sequence_numbers.dedup();
    sequence_numbers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use factstr::{EventFilter, EventStore, EventStoreError, NewEvent};
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::reader_on;
    use crate::{SqliteStore, SqliteStoreOptions, schema};

    #[test]
    fn queries_are_planned_on_the_narrowest_index() {
        let mut events: Vec<NewEvent> = (0..150)
            .map(|n| NewEvent::new("a", json!({"common": true, "id": n})))
            .collect();
        events.push(NewEvent::new("b", json!({"common": true, "id": 7})));
        let (_folder, connection) = reader_on(events);
        let plan_of = |query: EventQuery| plan(&connection, &query).unwrap();
        let tokens = |source_tokens: &[&str]| {
            source_tokens
                .iter()
                .map(|term| index::token(term))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let types = |names: &[&str]| Some(names.iter().map(|name| (*name).to_owned()).collect());

        assert!(matches!(plan_of(EventQuery::all()), Plan::Everything));
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([])),
            Plan::Everything
        ));
        assert!(matches!(
            plan_of(EventQuery::for_event_types(Vec::<String>::new())),
            Plan::Nothing
        ));
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([
                EventFilter::for_event_types(["a"]).with_payload_predicates(Vec::<Value>::new())
            ])),
            Plan::Nothing
        ));
        // A term held by no event: nothing can match.
        assert!(matches!(
            plan_of(
                EventQuery::all().with_filters([EventFilter::default()
                    .with_payload_predicates([json!({"common": true, "id": 1000})])])
            ),
            Plan::Nothing
        ));
        match plan_of(EventQuery::for_event_types(["a", "b", "a"])) {
            Plan::Indexed(sources) => assert_eq!(
                sources,
                vec![
                    Source {
                        kind: SourceKind::EventType("a".to_owned()),
                        exact: true
                    },
                    Source {
                        kind: SourceKind::EventType("b".to_owned()),
                        exact: true
                    },
                ]
            ),
            other => panic!("{other:?}"),
        }
        // The token of each predicate's rarest term, for the filter's types.
        match plan_of(
            EventQuery::all().with_filters([
                EventFilter::for_event_types(["a", "b", "a"])
                    .with_payload_predicates([json!({"common": true, "id": 7}), json!({"id": 8})]),
                EventFilter::default().with_payload_predicates([json!({"common": true, "id": 9})]),
                EventFilter::default().with_payload_predicates([json!({"id": 10})]),
            ]),
        ) {
            Plan::Indexed(sources) => assert_eq!(
                sources,
                vec![
                    Source {
                        kind: SourceKind::Tokens {
                            expression: tokens(&[r#""id"=7"#, r#""id"=8"#]),
                            event_types: types(&["a", "b"]),
                            unindexed_after: None,
                        },
                        exact: false
                    },
                    Source {
                        kind: SourceKind::Tokens {
                            expression: tokens(&[r#""id"=9"#]),
                            event_types: None,
                            unindexed_after: None,
                        },
                        exact: false
                    },
                    Source {
                        kind: SourceKind::Tokens {
                            expression: tokens(&[r#""id"=10"#]),
                            event_types: None,
                            unindexed_after: None,
                        },
                        exact: false
                    }
                ]
            ),
            other => panic!("{other:?}"),
        }
        // Types holding fewer events than the predicate's rarest term.
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([
                EventFilter::for_event_types(["b"]).with_payload_predicates([json!({"common": true})])
            ])),
            Plan::Indexed(ref sources) if sources == &vec![Source {
                kind: SourceKind::EventType("b".to_owned()),
                exact: false
            }]
        ));
        // Predicates without terms read the type index, or scan without types.
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([
                EventFilter::for_event_types(["b"]).with_payload_predicates([json!({"id": 1}), json!({})])
            ])),
            Plan::Indexed(ref sources) if sources == &vec![Source {
                kind: SourceKind::EventType("b".to_owned()),
                exact: false
            }]
        ));
        assert!(matches!(
            plan_of(
                EventQuery::all()
                    .with_filters([EventFilter::default().with_payload_predicates([json!([])])])
            ),
            Plan::Scan
        ));
    }

    /// Two payload values whose terms `"k"="…"` have the same 64-bit FNV-1a
    /// hash, so their events share one token in the payload index. (Found
    /// with a parallel collision search over `x -> hash of "k"="<hex of x>"`.)
    const COLLIDING: [&str; 2] = ["70720832b8a6eb74", "3a161806fb301088"];

    #[test]
    fn colliding_terms_widen_candidates_and_the_matcher_decides() {
        let [first, second] = COLLIDING;
        let term = |value: &str| payload_terms(&json!({ "k": value })).remove(0);
        assert_ne!(term(first), term(second));
        assert_eq!(index::token(&term(first)), index::token(&term(second)));

        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        // Enough other events of both types that the filters below with
        // types read the payload index too.
        store
            .append(
                (0..300)
                    .map(|n| NewEvent::new(["a", "b"][n % 2], json!({ "n": n })))
                    .collect(),
            )
            .unwrap();
        store
            .append(vec![
                NewEvent::new("a", json!({ "k": first })),
                NewEvent::new("a", json!({ "k": second })),
            ])
            .unwrap();
        store
            .append(vec![NewEvent::new("b", json!({ "k": first, "n": 1 }))])
            .unwrap();
        store
            .append(vec![NewEvent::new("b", json!({ "k": second }))])
            .unwrap();
        let context = |value: &str, types: Option<&[&str]>| {
            let mut filter =
                EventFilter::default().with_payload_predicates([json!({ "k": value })]);
            filter.event_types = types.map(|types| types.iter().map(|t| (*t).to_owned()).collect());
            EventQuery::all().with_filters([filter])
        };
        let found = |query: &EventQuery| {
            let result = store.query(query).unwrap();
            let sequence_numbers: Vec<u64> = result
                .event_records
                .iter()
                .map(|record| record.sequence_number)
                .collect();
            (sequence_numbers, result.current_context_version)
        };

        // The index returns the events of both values as candidates ...
        let connection =
            schema::open_reader_connection(&path, &SqliteStoreOptions::default()).unwrap();
        for (types, expected) in [
            (None, vec![301, 302, 303, 304]),
            (Some(&["a"][..]), vec![301, 302]),
            (Some(&["b", "a"][..]), vec![301, 302, 303, 304]),
        ] {
            let Plan::Indexed(sources) = plan(&connection, &context(first, types)).unwrap() else {
                panic!("a predicate with a term reads the payload index");
            };
            assert!(
                matches!(
                    sources[..],
                    [Source {
                        kind: SourceKind::Tokens { .. },
                        ..
                    }]
                ),
                "{sources:?}"
            );
            assert_eq!(
                union_of_candidates(&connection, &sources, 0, u64::MAX).unwrap(),
                expected
            );
        }
        // ... and the matcher keeps the events of the value asked for.
        assert_eq!(found(&context(first, None)), (vec![301, 303], Some(303)));
        assert_eq!(found(&context(second, None)), (vec![302, 304], Some(304)));
        assert_eq!(found(&context(first, Some(&["a"]))), (vec![301], Some(301)));
        assert_eq!(
            found(&context(second, Some(&["b"]))),
            (vec![304], Some(304))
        );
        assert_eq!(
            found(&context(first, None).with_min_sequence_number(303)),
            (vec![], Some(303))
        );

        // Conditional appends decide on the matcher's context version too.
        assert!(matches!(
            store.append_if(
                vec![NewEvent::new("a", json!({ "k": first }))],
                &context(first, None),
                Some(304)
            ),
            Err(EventStoreError::ConditionalAppendConflict {
                expected: Some(304),
                actual: Some(303)
            })
        ));
        let appended = store
            .append_if(
                vec![NewEvent::new("a", json!({ "k": first }))],
                &context(first, None),
                Some(303),
            )
            .unwrap();
        assert_eq!(appended.first_sequence_number, 305);
        assert_eq!(found(&context(second, None)), (vec![302, 304], Some(304)));
    }
}
