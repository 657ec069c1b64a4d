//! The reads of the log: queries, context versions, committed batch pages
//! and the newest batch.
//!
//! Every function here runs on the connection it is given and inside the
//! transaction the caller holds, so a reader's records and context version
//! come from one snapshot, and the writer's conditional checks see the
//! earlier appends of its group.

use chrono::{DateTime, Utc};
use factstr::backend::sequence::{time_from_stored_micros, to_stored};
use factstr::backend::{BatchReadRequest, CommittedBatchPage, group_into_batches};
use factstr::{EventQuery, EventRecord, EventStoreError, QueryResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::SqliteResultExt;
use crate::plan::{Plan, plan, sorted_distinct, union_of_candidates};
use crate::rows::{self, StoredEvent, decode_event};
use crate::sql::{self, Direction};

/// The last committed sequence number (0 when empty) and its commit time.
pub(crate) fn last_committed(
    connection: &Connection,
) -> Result<(u64, Option<DateTime<Utc>>), EventStoreError> {
    let row = connection
        .prepare_cached(sql::LAST_COMMITTED)
        .and_then(|mut statement| {
            statement
                .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
                .optional()
        })
        .or_failed("reading the last committed sequence number")?;
    match row {
        None => Ok((0, None)),
        Some((sequence_number, micros)) => Ok((
            rows::sequence_number(sequence_number)?,
            Some(time_from_stored_micros(micros)?),
        )),
    }
}

/// The newest committed batch (empty when the log is empty).
pub(crate) fn newest_batch(connection: &Connection) -> Result<Vec<EventRecord>, EventStoreError> {
    let reading = "reading the newest batch";
    let mut statement = connection
        .prepare_cached(sql::SCAN_DESCENDING)
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
    query_page(connection, query, usize::MAX)
}

/// The first `limit` records of `query` after its `min_sequence_number`,
/// with the context version of its filters. Reads no event past the page:
/// a scan stops at the page's last match, and indexed candidates are read
/// `limit` at a time per source.
pub(crate) fn query_page(
    connection: &Connection,
    query: &EventQuery,
    limit: usize,
) -> Result<QueryResult, EventStoreError> {
    let after = query.min_sequence_number.unwrap_or(0);
    let plan = plan(connection, query)?;
    let mut event_records = Vec::new();
    // Whether every candidate after the cursor was decided.
    let mut decided_all = true;
    match &plan {
        Plan::Nothing => {}
        Plan::Everything | Plan::Scan => {
            let everything = matches!(plan, Plan::Everything);
            scan_ascending(
                connection,
                after,
                u64::MAX,
                everything.then_some(limit),
                |event| {
                    if everything || query.matches_record(&event.record) {
                        event_records.push(event.record);
                    }
                    Ok(event_records.len() < limit)
                },
            )?;
            decided_all = event_records.len() < limit;
        }
        Plan::Indexed(sources) => {
            let mut from = after;
            loop {
                // Each source's next `limit` candidates; the union is
                // complete up to the smallest last candidate of a source
                // that filled its share.
                let mut candidates = Vec::new();
                let mut complete_through = u64::MAX;
                for source in sources {
                    let read = source.candidates(connection, from, u64::MAX, Some(limit))?;
                    if read.len() >= limit
                        && let Some(&last) = read.last()
                    {
                        complete_through = complete_through.min(last);
                    }
                    candidates.extend(read);
                }
                candidates.retain(|&sequence_number| sequence_number <= complete_through);
                for sequence_number in sorted_distinct(candidates) {
                    let event = load_event(connection, sequence_number)?;
                    if query.matches_record(&event.record) {
                        event_records.push(event.record);
                        if event_records.len() == limit {
                            break;
                        }
                    }
                }
                if event_records.len() == limit {
                    decided_all = false;
                    break;
                }
                if complete_through == u64::MAX {
                    break;
                }
                from = complete_through;
            }
        }
    }
    let last_returned_sequence_number = event_records.last().map(|record| record.sequence_number);
    let current_context_version = match last_returned_sequence_number {
        // Every candidate after the cursor was decided, so the newest
        // returned record is the newest match.
        Some(last) if decided_all => Some(last),
        Some(_) => newest_match(connection, &plan, query, u64::MAX)?,
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
                Ok(true)
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
                    Ok(true)
                })?;
                scanned_through = end;
            }
        }
        Plan::Indexed(sources) => {
            let mut candidates = Vec::new();
            for source in sources {
                let read = source.candidates(connection, after, through, Some(limit))?;
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
        batches: group_into_batches(
            events
                .into_iter()
                .map(|event| (event.record, event.batch_last_sequence_number)),
        ),
        scanned_through,
    })
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
            .prepare_cached(sql::NEWEST_AT_OR_BELOW)
            .and_then(|mut statement| {
                statement
                    .query_row([to_stored(upto)], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .or_failed("reading the newest event")?
            .map(rows::sequence_number)
            .transpose(),
        Plan::Scan => {
            let reading = "scanning for the newest matching event";
            let mut statement = connection
                .prepare_cached(sql::SCAN_DESCENDING)
                .or_failed(reading)?;
            let mut rows = statement.query([to_stored(upto)]).or_failed(reading)?;
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
            for source in sources.iter().filter(|source| source.is_exact()) {
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
            for source in sources.iter().filter(|source| !source.is_exact()) {
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
/// most `limit` of them, until it returns `false`.
fn scan_ascending(
    connection: &Connection,
    after: u64,
    through: u64,
    limit: Option<usize>,
    mut each: impl FnMut(StoredEvent) -> Result<bool, EventStoreError>,
) -> Result<(), EventStoreError> {
    let reading = "reading events";
    let limit = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let mut statement = connection
        .prepare_cached(sql::SCAN_ASCENDING)
        .or_failed(reading)?;
    let mut rows = statement
        .query(params![to_stored(after), to_stored(through), limit])
        .or_failed(reading)?;
    while let Some(row) = rows.next().or_failed(reading)? {
        if !each(decode_event(row)?)? {
            break;
        }
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
    let mut statement = connection
        .prepare_cached(sql::SELECT_EVENT)
        .or_failed(reading)?;
    let mut rows = statement
        .query([to_stored(sequence_number)])
        .or_failed(reading)?;
    match rows.next().or_failed(reading)? {
        Some(row) => decode_event(row),
        None => Err(EventStoreError::backend(format!(
            "the payload index names event {sequence_number}, which is missing; \
             the file may be corrupt"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use factstr::{EventFilter, EventStore, NewEvent};
    use serde_json::{Value, json};

    use super::*;
    use crate::{SqliteStore, SqliteStoreOptions, schema};

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
            // Pages read through the same plans agree with the whole query.
            let limit = 1 + round % 4;
            let mut cursor_query = event_query.clone();
            cursor_query.min_sequence_number = expected.get(round % 3).copied();
            let page = query_page(&connection, &cursor_query, limit).unwrap();
            let after = cursor_query.min_sequence_number.unwrap_or(0);
            let wanted: Vec<u64> = expected
                .iter()
                .copied()
                .filter(|&sequence_number| sequence_number > after)
                .take(limit)
                .collect();
            let paged: Vec<u64> = page
                .event_records
                .iter()
                .map(|record| record.sequence_number)
                .collect();
            assert_eq!(paged, wanted, "{cursor_query:?} limit {limit}");
            assert_eq!(page.last_returned_sequence_number, wanted.last().copied());
            assert_eq!(
                page.current_context_version,
                expected.last().copied(),
                "{cursor_query:?} limit {limit}"
            );
        }
        // The generated predicates do match something.
        assert!(matched > 400, "{matched}");
    }
}
