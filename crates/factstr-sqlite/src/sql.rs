//! Turning an [`EventQuery`] into candidate reads, and the reads built on
//! them: queries, context versions and committed batch pages.
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
use crate::index;

/// How many candidates of a token or type are counted when choosing the
/// narrowest source; beyond it they count as equally common.
const POSTINGS_COUNT_CAP: i64 = 128;

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
/// Candidates from the payload index: `?1` the match expression, `?2` and
/// `?3` the sequence bounds, `?4` the limit.
const TOKENS_ASCENDING: &str = "SELECT rowid FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 AND rowid > ?2 AND rowid <= ?3 \
     ORDER BY rowid LIMIT ?4";
const TOKENS_DESCENDING: &str = "SELECT rowid FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 AND rowid > ?2 AND rowid <= ?3 \
     ORDER BY rowid DESC LIMIT ?4";

const TOKEN_COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 LIMIT ?2)";
const TYPE_COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_events \
     INDEXED BY factstr_events_by_type WHERE event_type = ?1 LIMIT ?2)";

/// Like `TOKENS_*`, restricted to the event types bound from `?5` on (the
/// payload index walked first, each candidate's event row looked up).
fn tokens_of_types_sql(direction: Direction, types: usize) -> String {
    let mut sql = String::from(
        "SELECT factstr_payload_index.rowid FROM factstr_payload_index \
         CROSS JOIN factstr_events ON factstr_events.sequence_number = factstr_payload_index.rowid \
         WHERE factstr_payload_index MATCH ?1 \
         AND factstr_payload_index.rowid > ?2 AND factstr_payload_index.rowid <= ?3 \
         AND factstr_events.event_type IN (",
    );
    for index in 0..types {
        if index > 0 {
            sql.push(',');
        }
        sql.push('?');
        sql.push_str(&(index + 5).to_string());
    }
    sql.push_str(match direction {
        Direction::Ascending => ") ORDER BY factstr_payload_index.rowid LIMIT ?4",
        Direction::Descending => ") ORDER BY factstr_payload_index.rowid DESC LIMIT ?4",
    });
    sql
}

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
    /// Events whose payload index document matches `expression` (one or
    /// more tokens joined by `OR`), of `event_types` only when given.
    Tokens {
        expression: String,
        event_types: Option<Vec<String>>,
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
        let types = filter.event_types.as_deref().map(distinct);
        if types.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let Some(predicates) = &filter.payload_predicates else {
            match types {
                // This filter matches every event, so the query does.
                None => return Ok(Plan::Everything),
                Some(types) => {
                    for event_type in types {
                        add(Source {
                            kind: SourceKind::EventType(event_type),
                            exact: true,
                        });
                    }
                }
            }
            continue;
        };
        let term_sets: Vec<Vec<String>> = predicates.iter().map(payload_terms).collect();
        if term_sets.iter().any(Vec::is_empty) {
            // `{}`, `[]` and the like: no term to look up, so every event
            // of the filter's types is a candidate.
            match types {
                None => scan = true,
                Some(types) => {
                    for event_type in types {
                        add(Source {
                            kind: SourceKind::EventType(event_type),
                            exact: false,
                        });
                    }
                }
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
            let Some((token, candidates)) = rarest_token(connection, terms, count_single)? else {
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
            for event_type in types {
                add(Source {
                    kind: SourceKind::EventType(event_type.clone()),
                    exact: false,
                });
            }
            continue;
        }
        add(Source {
            kind: SourceKind::Tokens {
                expression: tokens.join(" OR "),
                event_types: types,
            },
            exact: false,
        });
    }
    Ok(if scan {
        Plan::Scan
    } else if sources.is_empty() {
        Plan::Nothing
    } else {
        Plan::Indexed(sources)
    })
}

/// The token of the term of `terms` held by the fewest events (counted up
/// to [`POSTINGS_COUNT_CAP`]) and that count; `None` when some term is held
/// by no event, so nothing can match. A single term is not counted unless
/// `count_single` (its count is then 0).
fn rarest_token(
    connection: &Connection,
    terms: &[String],
    count_single: bool,
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
        if count == 0 {
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
        .prepare_cached(TOKEN_COUNT)
        .and_then(|mut statement| {
            statement.query_row(params![token, POSTINGS_COUNT_CAP], |row| row.get(0))
        })
        .or_failed("counting payload index postings")
}

/// How many events have one of `types`, counted up to
/// [`POSTINGS_COUNT_CAP`] per type.
fn type_postings(connection: &Connection, types: &[String]) -> Result<i64, EventStoreError> {
    let counting = "counting events by type";
    let mut statement = connection.prepare_cached(TYPE_COUNT).or_failed(counting)?;
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
        let typed_sql;
        let (sql, key, event_types): (&str, &str, &[String]) = match &self.kind {
            SourceKind::EventType(event_type) => (
                if ascending {
                    TYPE_ASCENDING
                } else {
                    TYPE_DESCENDING
                },
                event_type,
                &[],
            ),
            SourceKind::Tokens {
                expression,
                event_types: None,
            } => (
                if ascending {
                    TOKENS_ASCENDING
                } else {
                    TOKENS_DESCENDING
                },
                expression,
                &[],
            ),
            SourceKind::Tokens {
                expression,
                event_types: Some(event_types),
            } => {
                typed_sql = tokens_of_types_sql(direction, event_types.len());
                (typed_sql.as_str(), expression, event_types)
            }
        };
        let mut statement_params: Vec<&dyn rusqlite::ToSql> =
            Vec::with_capacity(4 + event_types.len());
        statement_params.extend([&key as &dyn rusqlite::ToSql, &after, &through, &limit]);
        statement_params.extend(
            event_types
                .iter()
                .map(|event_type| event_type as &dyn rusqlite::ToSql),
        );
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

    use factstr::{EventFilter, EventStore, EventStoreError, NewEvent};
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
            TYPE_COUNT,
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
    fn payload_index_reads_match_within_bounds_in_rowid_order() {
        let (_folder, connection) = reader_on(vec![NewEvent::new("a", json!({"k": 1}))]);
        let mut statements = vec![TOKENS_ASCENDING.to_owned(), TOKENS_DESCENDING.to_owned()];
        for direction in [Direction::Ascending, Direction::Descending] {
            for types in [1, 3] {
                statements.push(tokens_of_types_sql(direction, types));
            }
        }
        for sql in statements {
            let plan = query_plan(&connection, &sql);
            // FTS5 answers the MATCH and both rowid bounds (`M`, `>`, `<`)
            // and delivers rows in the requested rowid order, so no sort.
            let index_step = plan.first().map(String::as_str).unwrap_or_default();
            let constraints = index_step
                .strip_prefix("SCAN factstr_payload_index VIRTUAL TABLE INDEX ")
                .and_then(|index| index.split_once(':'))
                .map(|(_, constraints)| constraints)
                .unwrap_or_default();
            assert!(
                constraints.contains('M') && constraints.contains('>') && constraints.contains('<'),
                "{sql}: {plan:?}"
            );
            assert!(
                plan[1..]
                    .iter()
                    .all(|step| step.starts_with("SEARCH factstr_events USING INTEGER PRIMARY KEY")),
                "{sql}: {plan:?}"
            );
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
        // Counting a token's postings reads the index for the MATCH only.
        let plan = query_plan(&connection, TOKEN_COUNT);
        assert!(
            plan.iter().any(|step| step
                .strip_prefix("SCAN factstr_payload_index VIRTUAL TABLE INDEX ")
                .is_some_and(|index| index.contains(":M"))),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|step| step.contains("VIRTUAL TABLE")
                || step.starts_with("SCAN (subquery")
                || step.starts_with("CO-ROUTINE")),
            "{plan:?}"
        );
    }

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
                        },
                        exact: false
                    },
                    Source {
                        kind: SourceKind::Tokens {
                            expression: tokens(&[r#""id"=9"#]),
                            event_types: None,
                        },
                        exact: false
                    },
                    Source {
                        kind: SourceKind::Tokens {
                            expression: tokens(&[r#""id"=10"#]),
                            event_types: None,
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

    /// A small deterministic generator (xorshift), so the case is the same
    /// on every run.
    struct Generator(u64);

    impl Generator {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }

        fn scalar(&mut self) -> Value {
            let scalars = [
                json!(1),
                json!(1.0),
                json!(2),
                json!(-0.0),
                json!(0.0),
                json!("a"),
                json!("b"),
                json!("1"),
                json!(null),
                json!(true),
                json!(false),
            ];
            scalars[self.below(scalars.len())].clone()
        }

        fn value(&mut self, depth: usize) -> Value {
            match if depth == 0 { 0 } else { self.below(4) } {
                0 | 1 => self.scalar(),
                2 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object(
                    (0..self.below(4))
                        .map(|_| {
                            let key = ["a", "b", "c"][self.below(3)].to_owned();
                            (key, self.value(depth - 1))
                        })
                        .collect(),
                ),
            }
        }

        /// A part of `value` that `value` matches: some keys and elements
        /// dropped, at any depth.
        fn part_of(&mut self, value: &Value) -> Value {
            match value {
                Value::Array(items) => {
                    let mut part = Vec::new();
                    for item in items {
                        if self.below(3) > 0 {
                            part.push(self.part_of(item));
                        }
                    }
                    Value::Array(part)
                }
                Value::Object(entries) => {
                    let mut part = serde_json::Map::new();
                    for (key, item) in entries {
                        if self.below(3) > 0 {
                            part.insert(key.clone(), self.part_of(item));
                        }
                    }
                    Value::Object(part)
                }
                scalar => scalar.clone(),
            }
        }
    }

    #[test]
    fn index_candidates_hold_every_match_of_generated_predicates() {
        let mut generator = Generator(0x2545_f491_4f6c_dd1d);
        let types = ["x", "y", "z"];
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("events.db");
        {
            // Several commits, so the index holds several segments.
            let store = SqliteStore::open(&path).unwrap();
            for _ in 0..40 {
                let batch = (0..1 + generator.below(12))
                    .map(|_| NewEvent::new(types[generator.below(3)], generator.value(3)))
                    .collect();
                store.append(batch).unwrap();
            }
        }
        let connection =
            schema::open_reader_connection(&path, &SqliteStoreOptions::default()).unwrap();
        let events = query(&connection, &EventQuery::all())
            .unwrap()
            .event_records;

        let mut matched = 0;
        for round in 0..400 {
            let predicate = if round % 2 == 0 {
                let payload = &events[generator.below(events.len())].payload;
                generator.part_of(payload)
            } else {
                generator.value(2)
            };
            let mut filter = EventFilter::default().with_payload_predicates([predicate]);
            if round % 3 > 0 {
                filter.event_types =
                    Some(types[..round % 3].iter().map(|t| (*t).to_owned()).collect());
            }
            let event_query = EventQuery::all().with_filters([filter]);
            let expected: Vec<u64> = events
                .iter()
                .filter(|record| event_query.matches_record(record))
                .map(|record| record.sequence_number)
                .collect();
            matched += expected.len();

            if let Plan::Indexed(sources) = plan(&connection, &event_query).unwrap() {
                let candidates = union_of_candidates(&connection, &sources, 0, u64::MAX).unwrap();
                assert!(
                    expected.iter().all(|match_| candidates.contains(match_)),
                    "{event_query:?}: candidates {candidates:?} miss some of {expected:?}"
                );
            }
            let result = query(&connection, &event_query).unwrap();
            let found: Vec<u64> = result
                .event_records
                .iter()
                .map(|record| record.sequence_number)
                .collect();
            assert_eq!(found, expected, "{event_query:?}");
            assert_eq!(
                result.current_context_version,
                expected.last().copied(),
                "{event_query:?}"
            );
            assert_eq!(
                context_version(&connection, &event_query).unwrap(),
                expected.last().copied(),
                "{event_query:?}"
            );
        }
        // The generated predicates do match something.
        assert!(matched > 400, "{matched}");
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
