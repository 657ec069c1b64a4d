//! Turning an [`EventQuery`] into candidate reads, and the reads built on
//! them: queries, context versions and committed batch pages.
//!
//! SQL only narrows: every candidate is decided by
//! [`EventQuery::matches`], the one implementation of matching. A filter
//! listing event types without predicates reads the type index; a payload
//! predicate reads the payload term index (see
//! `factstr::backend::payload_terms`) for its rarest term, restricted to the
//! filter's types; a filter that neither can narrow makes the read scan the
//! log.
//!
//! Every function here runs on the connection it is given and inside the
//! transaction the caller holds, so a reader's records and context version
//! come from one snapshot, and the writer's conditional checks see the
//! earlier appends of its group.

use chrono::{DateTime, Utc};
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::{BatchReadRequest, CommittedBatchPage};
use factstr::{EventQuery, EventRecord, EventStoreError, QueryResult};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use crate::error::{SqliteResultExt, corrupt};

/// How many postings of a term are counted when choosing a predicate's
/// rarest term; beyond it terms count as equally common.
const TERM_COUNT_CAP: i64 = 128;

const SELECT_EVENT: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events WHERE sequence_number = ?1";
const SCAN_ASCENDING: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events \
     WHERE sequence_number > ?1 AND sequence_number <= ?2 ORDER BY sequence_number LIMIT ?3";
const SCAN_DESCENDING: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events \
     WHERE sequence_number <= ?1 ORDER BY sequence_number DESC";
const NEWEST_AT_OR_BELOW: &str = "SELECT sequence_number FROM factstr_events \
     WHERE sequence_number <= ?1 ORDER BY sequence_number DESC LIMIT 1";
const LAST_COMMITTED: &str = "SELECT sequence_number, occurred_at_micros FROM factstr_events \
     ORDER BY sequence_number DESC LIMIT 1";

const TYPE_ASCENDING: &str = "SELECT sequence_number FROM factstr_events INDEXED BY factstr_events_by_type \
     WHERE event_type = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number LIMIT ?4";
const TYPE_DESCENDING: &str = "SELECT sequence_number FROM factstr_events INDEXED BY factstr_events_by_type \
     WHERE event_type = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number DESC LIMIT ?4";
const TERM_TYPE_ASCENDING: &str = "SELECT sequence_number FROM factstr_payload_terms \
     WHERE term = ?1 AND event_type = ?2 AND sequence_number > ?3 AND sequence_number <= ?4 \
     ORDER BY sequence_number LIMIT ?5";
const TERM_TYPE_DESCENDING: &str = "SELECT sequence_number FROM factstr_payload_terms \
     WHERE term = ?1 AND event_type = ?2 AND sequence_number > ?3 AND sequence_number <= ?4 \
     ORDER BY sequence_number DESC LIMIT ?5";
const TERM_ASCENDING: &str = "SELECT sequence_number FROM factstr_payload_terms \
     WHERE term = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number LIMIT ?4";
const TERM_DESCENDING: &str = "SELECT sequence_number FROM factstr_payload_terms \
     WHERE term = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number DESC LIMIT ?4";
const TERM_TYPE_COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_payload_terms \
     WHERE term = ?1 AND event_type = ?2 LIMIT ?3)";
const TERM_COUNT: &str =
    "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_payload_terms WHERE term = ?1 LIMIT ?2)";

/// Where the events that may match a query are found.
#[derive(Debug)]
enum Plan {
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
struct Source {
    kind: SourceKind,
    /// Every candidate matches the query (an event type listed by a filter
    /// without predicates), so the newest candidate is the newest match.
    exact: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum SourceKind {
    /// Events of one type, from `factstr_events_by_type`.
    EventType(String),
    /// Events holding a payload term, optionally of one type only.
    Term {
        term: String,
        event_type: Option<String>,
    },
}

/// The ascending or descending direction of a candidate read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ascending,
    Descending,
}

/// A committed event as read from `factstr_events`.
#[derive(Debug)]
struct StoredEvent {
    batch_last_sequence_number: u64,
    record: EventRecord,
}

/// The last committed sequence number (0 when empty) and its commit time.
pub(crate) fn last_committed(
    connection: &Connection,
) -> Result<(u64, Option<DateTime<Utc>>), EventStoreError> {
    let row = connection
        .prepare_cached(LAST_COMMITTED)
        .and_then(|mut statement| {
            statement
                .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
                .optional()
        })
        .or_failed("reading the last committed sequence number")?;
    match row {
        None => Ok((0, None)),
        Some((sequence_number, micros)) => Ok((
            to_sequence_number(sequence_number)?,
            Some(to_timestamp(micros)?),
        )),
    }
}

/// The newest committed batch (empty when the log is empty).
pub(crate) fn newest_batch(connection: &Connection) -> Result<Vec<EventRecord>, EventStoreError> {
    let reading = "reading the newest batch";
    let mut statement = connection
        .prepare_cached(SCAN_DESCENDING)
        .or_failed(reading)?;
    let mut rows = statement.query([i64::MAX]).or_failed(reading)?;
    let mut batch = Vec::new();
    let mut batch_last = None;
    while let Some(row) = rows.next().or_failed(reading)? {
        let event = decode_event(row)?;
        if *batch_last.get_or_insert(event.batch_last_sequence_number)
            != event.batch_last_sequence_number
        {
            break;
        }
        batch.push(event.record);
    }
    batch.reverse();
    Ok(batch)
}

/// The records of `query` after its `min_sequence_number`, with the context
/// version of its filters.
pub(crate) fn query(
    connection: &Connection,
    query: &EventQuery,
) -> Result<QueryResult, EventStoreError> {
    let after = query.min_sequence_number.unwrap_or(0);
    let plan = plan(connection, query)?;
    let mut event_records = Vec::new();
    match &plan {
        Plan::Nothing => {}
        Plan::Everything | Plan::Scan => {
            scan_ascending(connection, after, u64::MAX, None, |event| {
                if matches!(plan, Plan::Everything) || query.matches_record(&event.record) {
                    event_records.push(event.record);
                }
                Ok(())
            })?;
        }
        Plan::Indexed(sources) => {
            let candidates = union_of_candidates(connection, sources, after, u64::MAX)?;
            for sequence_number in candidates {
                let event = load_event(connection, sequence_number)?;
                if query.matches_record(&event.record) {
                    event_records.push(event.record);
                }
            }
        }
    }
    let last_returned_sequence_number = event_records.last().map(|record| record.sequence_number);
    // Every candidate after the cursor was decided above, so the newest
    // returned record, if any, is the newest match.
    let current_context_version = match last_returned_sequence_number {
        Some(last) => Some(last),
        None => newest_match(connection, &plan, query, after)?,
    };
    Ok(QueryResult {
        event_records,
        last_returned_sequence_number,
        current_context_version,
    })
}

/// The context version of `query`: the greatest sequence number of an event
/// matching its filters (its `min_sequence_number` is ignored).
pub(crate) fn context_version(
    connection: &Connection,
    query: &EventQuery,
) -> Result<Option<u64>, EventStoreError> {
    let plan = plan(connection, query)?;
    newest_match(connection, &plan, query, u64::MAX)
}

/// One page of committed batches for the stream dispatcher: at most about
/// `max_events` events read, never a batch split, narrowed by the stream's
/// query when it has one.
pub(crate) fn read_committed_batches(
    connection: &Connection,
    request: &BatchReadRequest<'_>,
) -> Result<CommittedBatchPage, EventStoreError> {
    let (after, through) = (request.after, request.through);
    if after >= through {
        return Ok(CommittedBatchPage {
            batches: Vec::new(),
            scanned_through: through,
        });
    }
    let limit = request.max_events.max(1);
    let plan = match request.query {
        None => Plan::Everything,
        Some(query) => plan(connection, query)?,
    };
    let matches = |event: &StoredEvent| {
        request
            .query
            .is_none_or(|query| query.matches_record(&event.record))
    };
    let mut events = Vec::new();
    let mut scanned_through = through;
    match &plan {
        Plan::Nothing => {}
        Plan::Everything | Plan::Scan => {
            let mut read = 0;
            let mut last = None;
            scan_ascending(connection, after, through, Some(limit), |event| {
                read += 1;
                last = Some((
                    event.record.sequence_number,
                    event.batch_last_sequence_number,
                ));
                if matches(&event) {
                    events.push(event);
                }
                Ok(())
            })?;
            if read >= limit
                && let Some((last_read, batch_last)) = last
            {
                // Complete the batch the page ended in.
                let end = batch_last.min(through).max(last_read);
                scan_ascending(connection, last_read, end, None, |event| {
                    if matches(&event) {
                        events.push(event);
                    }
                    Ok(())
                })?;
                scanned_through = end;
            }
        }
        Plan::Indexed(sources) => {
            let mut candidates = Vec::new();
            for source in sources {
                let mut read = Vec::new();
                source.visit(
                    connection,
                    after,
                    through,
                    Direction::Ascending,
                    Some(limit),
                    |sequence_number| {
                        read.push(sequence_number);
                        Ok(true)
                    },
                )?;
                // A source that filled the page may hold more candidates
                // after its last one: the page ends there.
                if read.len() >= limit
                    && let Some(&last) = read.last()
                {
                    scanned_through = scanned_through.min(last);
                }
                candidates.extend(read);
            }
            candidates.retain(|&sequence_number| sequence_number <= scanned_through);
            load_matching(
                connection,
                sorted_distinct(candidates),
                &matches,
                &mut events,
            )?;
            if scanned_through < through
                && let Some(batch_last) =
                    events.last().map(|event| event.batch_last_sequence_number)
                && batch_last > scanned_through
            {
                // The page ended inside a batch with matches: complete it.
                let end = batch_last.min(through);
                let rest = union_of_candidates(connection, sources, scanned_through, end)?;
                load_matching(connection, rest, &matches, &mut events)?;
                scanned_through = end;
            }
        }
    }
    Ok(CommittedBatchPage {
        batches: group_into_batches(events),
        scanned_through,
    })
}

/// Decides where the candidates of `query` are.
fn plan(connection: &Connection, query: &EventQuery) -> Result<Plan, EventStoreError> {
    let Some(filters) = query.filters.as_ref().filter(|filters| !filters.is_empty()) else {
        return Ok(Plan::Everything);
    };
    let mut sources: Vec<Source> = Vec::new();
    let mut add = |source: Source| {
        if let Some(known) = sources.iter_mut().find(|known| known.kind == source.kind) {
            known.exact |= source.exact;
        } else {
            sources.push(source);
        }
    };
    let mut scan = false;
    for filter in filters {
        let types = filter.event_types.as_deref();
        if types.is_some_and(<[String]>::is_empty) {
            continue;
        }
        let Some(predicates) = &filter.payload_predicates else {
            match types {
                // This filter matches every event, so the query does.
                None => return Ok(Plan::Everything),
                Some(types) => {
                    for event_type in types {
                        add(Source {
                            kind: SourceKind::EventType(event_type.clone()),
                            exact: true,
                        });
                    }
                }
            }
            continue;
        };
        for predicate in predicates {
            let terms = payload_terms(predicate);
            if terms.is_empty() {
                // `{}`, `[]` and the like: no term to look up.
                match types {
                    None => scan = true,
                    Some(types) => {
                        for event_type in types {
                            add(Source {
                                kind: SourceKind::EventType(event_type.clone()),
                                exact: false,
                            });
                        }
                    }
                }
                continue;
            }
            // Every term of a matching predicate is a term of the payload,
            // so the postings of any one term hold every match; the rarest
            // term gives the fewest candidates.
            let Some(term) = rarest_term(connection, terms, types)? else {
                continue;
            };
            match types {
                None => add(Source {
                    kind: SourceKind::Term {
                        term,
                        event_type: None,
                    },
                    exact: false,
                }),
                Some(types) => {
                    for event_type in types {
                        add(Source {
                            kind: SourceKind::Term {
                                term: term.clone(),
                                event_type: Some(event_type.clone()),
                            },
                            exact: false,
                        });
                    }
                }
            }
        }
    }
    Ok(if scan {
        Plan::Scan
    } else if sources.is_empty() {
        Plan::Nothing
    } else {
        Plan::Indexed(sources)
    })
}

/// The term with the fewest postings (counted up to [`TERM_COUNT_CAP`]) for
/// `types`; `None` when some term has no posting at all, so nothing matches.
/// A single term is returned without counting.
fn rarest_term(
    connection: &Connection,
    terms: Vec<String>,
    types: Option<&[String]>,
) -> Result<Option<String>, EventStoreError> {
    if let [_] = terms.as_slice() {
        // One term: nothing to choose between.
        return Ok(terms.into_iter().next());
    }
    let mut rarest: Option<(i64, String)> = None;
    for term in terms {
        let count = term_postings(connection, &term, types)?;
        if count == 0 {
            return Ok(None);
        }
        if rarest.as_ref().is_none_or(|(fewest, _)| count < *fewest) {
            rarest = Some((count, term));
        }
    }
    Ok(rarest.map(|(_, term)| term))
}

/// How many events of `types` hold `term`, counted up to [`TERM_COUNT_CAP`]
/// per type.
fn term_postings(
    connection: &Connection,
    term: &str,
    types: Option<&[String]>,
) -> Result<i64, EventStoreError> {
    let counting = "counting payload term postings";
    match types {
        None => connection
            .prepare_cached(TERM_COUNT)
            .and_then(|mut statement| {
                statement.query_row(params![term, TERM_COUNT_CAP], |row| row.get(0))
            })
            .or_failed(counting),
        Some(types) => {
            let mut statement = connection
                .prepare_cached(TERM_TYPE_COUNT)
                .or_failed(counting)?;
            let mut total = 0;
            for event_type in types {
                total += statement
                    .query_row(params![term, event_type, TERM_COUNT_CAP], |row| {
                        row.get::<_, i64>(0)
                    })
                    .or_failed(counting)?;
            }
            Ok(total)
        }
    }
}

impl Source {
    /// Calls `visit` with the candidates in `after < s <= through`, in
    /// `direction`, at most `limit` of them, until it returns `false`.
    fn visit(
        &self,
        connection: &Connection,
        after: u64,
        through: u64,
        direction: Direction,
        limit: Option<usize>,
        mut visit: impl FnMut(u64) -> Result<bool, EventStoreError>,
    ) -> Result<(), EventStoreError> {
        let reading = "reading indexed candidates";
        let (after, through) = (to_sql_integer(after), to_sql_integer(through));
        let limit = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let ascending = direction == Direction::Ascending;
        let (sql, mut statement_params): (&str, Vec<&dyn rusqlite::ToSql>) = match &self.kind {
            SourceKind::EventType(event_type) => (
                if ascending {
                    TYPE_ASCENDING
                } else {
                    TYPE_DESCENDING
                },
                vec![event_type],
            ),
            SourceKind::Term {
                term,
                event_type: Some(event_type),
            } => (
                if ascending {
                    TERM_TYPE_ASCENDING
                } else {
                    TERM_TYPE_DESCENDING
                },
                vec![term, event_type],
            ),
            SourceKind::Term {
                term,
                event_type: None,
            } => (
                if ascending {
                    TERM_ASCENDING
                } else {
                    TERM_DESCENDING
                },
                vec![term],
            ),
        };
        statement_params.extend([&after as &dyn rusqlite::ToSql, &through, &limit]);
        let mut statement = connection.prepare_cached(sql).or_failed(reading)?;
        let mut rows = statement
            .query(statement_params.as_slice())
            .or_failed(reading)?;
        while let Some(row) = rows.next().or_failed(reading)? {
            let sequence_number = to_sequence_number(row.get(0).or_failed(reading)?)?;
            if !visit(sequence_number)? {
                break;
            }
        }
        Ok(())
    }
}

/// The sorted, distinct candidates of all `sources` in `after < s <= through`.
fn union_of_candidates(
    connection: &Connection,
    sources: &[Source],
    after: u64,
    through: u64,
) -> Result<Vec<u64>, EventStoreError> {
    let mut candidates = Vec::new();
    for source in sources {
        source.visit(
            connection,
            after,
            through,
            Direction::Ascending,
            None,
            |sequence_number| {
                candidates.push(sequence_number);
                Ok(true)
            },
        )?;
    }
    Ok(sorted_distinct(candidates))
}

/// The greatest sequence number at or below `upto` of an event matching
/// `query`, found through `plan`.
fn newest_match(
    connection: &Connection,
    plan: &Plan,
    query: &EventQuery,
    upto: u64,
) -> Result<Option<u64>, EventStoreError> {
    match plan {
        Plan::Nothing => Ok(None),
        Plan::Everything => connection
            .prepare_cached(NEWEST_AT_OR_BELOW)
            .and_then(|mut statement| {
                statement
                    .query_row([to_sql_integer(upto)], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .or_failed("reading the newest event")?
            .map(to_sequence_number)
            .transpose(),
        Plan::Scan => {
            let reading = "scanning for the newest matching event";
            let mut statement = connection
                .prepare_cached(SCAN_DESCENDING)
                .or_failed(reading)?;
            let mut rows = statement.query([to_sql_integer(upto)]).or_failed(reading)?;
            while let Some(row) = rows.next().or_failed(reading)? {
                let event = decode_event(row)?;
                if query.matches_record(&event.record) {
                    return Ok(Some(event.record.sequence_number));
                }
            }
            Ok(None)
        }
        Plan::Indexed(sources) => {
            // Exact sources answer with their newest candidate; the others
            // are walked newest first, only above the best answer so far.
            let mut newest: Option<u64> = None;
            for source in sources.iter().filter(|source| source.exact) {
                source.visit(
                    connection,
                    0,
                    upto,
                    Direction::Descending,
                    Some(1),
                    |sequence_number| {
                        newest = newest.max(Some(sequence_number));
                        Ok(false)
                    },
                )?;
            }
            for source in sources.iter().filter(|source| !source.exact) {
                let floor = newest.unwrap_or(0);
                source.visit(
                    connection,
                    floor,
                    upto,
                    Direction::Descending,
                    None,
                    |sequence_number| {
                        let event = load_event(connection, sequence_number)?;
                        if query.matches_record(&event.record) {
                            newest = newest.max(Some(sequence_number));
                            return Ok(false);
                        }
                        Ok(true)
                    },
                )?;
            }
            Ok(newest)
        }
    }
}

/// Calls `each` with every event in `after < s <= through`, ascending, at
/// most `limit` of them.
fn scan_ascending(
    connection: &Connection,
    after: u64,
    through: u64,
    limit: Option<usize>,
    mut each: impl FnMut(StoredEvent) -> Result<(), EventStoreError>,
) -> Result<(), EventStoreError> {
    let reading = "reading events";
    let limit = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let mut statement = connection
        .prepare_cached(SCAN_ASCENDING)
        .or_failed(reading)?;
    let mut rows = statement
        .query(params![
            to_sql_integer(after),
            to_sql_integer(through),
            limit
        ])
        .or_failed(reading)?;
    while let Some(row) = rows.next().or_failed(reading)? {
        each(decode_event(row)?)?;
    }
    Ok(())
}

/// Loads `candidates` and keeps the events `matches` accepts.
fn load_matching(
    connection: &Connection,
    candidates: Vec<u64>,
    matches: &impl Fn(&StoredEvent) -> bool,
    events: &mut Vec<StoredEvent>,
) -> Result<(), EventStoreError> {
    for sequence_number in candidates {
        let event = load_event(connection, sequence_number)?;
        if matches(&event) {
            events.push(event);
        }
    }
    Ok(())
}

fn load_event(
    connection: &Connection,
    sequence_number: u64,
) -> Result<StoredEvent, EventStoreError> {
    let reading = "reading an event";
    let mut statement = connection.prepare_cached(SELECT_EVENT).or_failed(reading)?;
    let mut rows = statement
        .query([to_sql_integer(sequence_number)])
        .or_failed(reading)?;
    match rows.next().or_failed(reading)? {
        Some(row) => decode_event(row),
        None => Err(EventStoreError::backend(format!(
            "the payload index names event {sequence_number}, which is missing; \
             the file may be corrupt"
        ))),
    }
}

/// Decodes a row of `sequence_number, batch_last_sequence_number,
/// occurred_at_micros, event_type, payload`.
fn decode_event(row: &Row<'_>) -> Result<StoredEvent, EventStoreError> {
    let reading = "reading an event row";
    let sequence_number = to_sequence_number(row.get(0).or_failed(reading)?)?;
    let batch_last_sequence_number = to_sequence_number(row.get(1).or_failed(reading)?)?;
    let occurred_at = to_timestamp(row.get(2).or_failed(reading)?)?;
    let event_type: String = row.get(3).or_failed(reading)?;
    let payload_text = row
        .get_ref(4)
        .and_then(|value| value.as_str().map_err(Into::into))
        .or_failed(reading)?;
    let payload: Value = serde_json::from_str(payload_text).map_err(|error| {
        corrupt(
            "payload",
            format_args!("event {sequence_number} does not hold JSON ({error})"),
        )
    })?;
    Ok(StoredEvent {
        batch_last_sequence_number,
        record: EventRecord {
            sequence_number,
            occurred_at,
            event_type,
            payload,
        },
    })
}

/// Groups ascending events into their committed batches.
fn group_into_batches(events: Vec<StoredEvent>) -> Vec<Vec<EventRecord>> {
    let mut batches: Vec<Vec<EventRecord>> = Vec::new();
    let mut current_batch_last = None;
    for event in events {
        if current_batch_last != Some(event.batch_last_sequence_number) {
            current_batch_last = Some(event.batch_last_sequence_number);
            batches.push(Vec::new());
        }
        if let Some(batch) = batches.last_mut() {
            batch.push(event.record);
        }
    }
    batches
}

fn sorted_distinct(mut sequence_numbers: Vec<u64>) -> Vec<u64> {
    sequence_numbers.sort_unstable();
    sequence_numbers.dedup();
    sequence_numbers
}

/// A sequence number or bound as an SQL integer; bounds beyond the SQL range
/// are clamped (no stored sequence number exceeds `i64::MAX`).
pub(crate) fn to_sql_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored sequence number or cursor.
pub(crate) fn to_sequence_number(value: i64) -> Result<u64, EventStoreError> {
    u64::try_from(value).map_err(|_| corrupt("sequence number", value))
}

/// A stored commit time in microseconds since the Unix epoch.
pub(crate) fn to_timestamp(micros: i64) -> Result<DateTime<Utc>, EventStoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt("commit time", micros))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use factstr::{EventFilter, EventStore, NewEvent};
    use serde_json::json;

    use super::*;
    use crate::{SqliteStore, SqliteStoreOptions, schema};

    /// A reader on a database holding `events`.
    fn reader_on(events: Vec<NewEvent>) -> (tempfile::TempDir, Connection) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("events.db");
        SqliteStore::open(&path).unwrap().append(events).unwrap();
        let connection =
            schema::open_reader_connection(&path, &SqliteStoreOptions::default()).unwrap();
        (folder, connection)
    }

    fn query_plan(connection: &Connection, sql: &str) -> Vec<String> {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        // Parameters stay unbound: the plan does not depend on their values.
        let mut rows = statement.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps
    }

    #[test]
    fn candidate_reads_search_indexes_and_never_scan_a_table() {
        let (_folder, connection) = reader_on(vec![NewEvent::new("a", json!({"k": 1}))]);
        for sql in [
            SELECT_EVENT,
            SCAN_ASCENDING,
            SCAN_DESCENDING,
            NEWEST_AT_OR_BELOW,
            LAST_COMMITTED,
            TYPE_ASCENDING,
            TYPE_DESCENDING,
            TERM_TYPE_ASCENDING,
            TERM_TYPE_DESCENDING,
            TERM_ASCENDING,
            TERM_DESCENDING,
            TERM_TYPE_COUNT,
            TERM_COUNT,
        ] {
            let plan = query_plan(&connection, sql);
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN ")
                    || step.starts_with("SCAN (subquery")
                    || step.starts_with("SCAN factstr_events")
                        && (sql == SCAN_DESCENDING || sql == LAST_COMMITTED)),
                "{sql}: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.starts_with("SEARCH ")
                        || step.starts_with("SCAN factstr_events")),
                "{sql}: {plan:?}"
            );
        }
        // Newest-first reads walk the rowid backwards from their bound.
        for sql in [SCAN_DESCENDING, LAST_COMMITTED] {
            let plan = query_plan(&connection, sql);
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn queries_are_planned_on_the_narrowest_index() {
        let mut events: Vec<NewEvent> = (0..50)
            .map(|n| NewEvent::new("a", json!({"common": true, "id": n})))
            .collect();
        events.push(NewEvent::new("b", json!({"common": true, "id": 7})));
        let (_folder, connection) = reader_on(events);
        let plan_of = |query: EventQuery| plan(&connection, &query).unwrap();

        assert!(matches!(plan_of(EventQuery::all()), Plan::Everything));
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([])),
            Plan::Everything
        ));
        assert!(matches!(
            plan_of(EventQuery::for_event_types(Vec::<String>::new())),
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
        // The rarer of the predicate's terms, for the filter's type.
        match plan_of(
            EventQuery::all().with_filters([EventFilter::for_event_types(["a"])
                .with_payload_predicates([json!({"common": true, "id": 7})])]),
        ) {
            Plan::Indexed(sources) => assert_eq!(
                sources,
                vec![Source {
                    kind: SourceKind::Term {
                        term: r#""id"=7"#.to_owned(),
                        event_type: Some("a".to_owned())
                    },
                    exact: false
                }]
            ),
            other => panic!("{other:?}"),
        }
        // Predicates without terms read the type index, or scan without types.
        assert!(matches!(
            plan_of(EventQuery::all().with_filters([
                EventFilter::for_event_types(["b"]).with_payload_predicates([json!({})])
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
}
