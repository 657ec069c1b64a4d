//! Reading the log through the pool: queries with their context version,
//! the log's head, committed batches for streams, and the newest match of
//! a context.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use factstr::backend::sequence::to_stored;
use factstr::backend::{CommittedBatchPage, group_into_batches};
use factstr::{EventQuery, EventRecord, EventStoreError, QueryResult};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Row};

use crate::error::{database_failure, is_connection_lost};
use crate::rows::{decode_batch_row, decode_head, decode_record, parse_payload, stored_number};
use crate::schema::SchemaNames;
use crate::where_clause::Candidates;

/// The newest candidates a query reads for its context version; when all
/// fail the matcher, [`newest_match`] reads on.
const NEWEST_CANDIDATES: i64 = 4;
/// Candidates fetched at first when looking for the newest match; each
/// further round fetches four times as many, up to [`MAX_NEWEST_CANDIDATES`].
const FIRST_NEWEST_CANDIDATES: i64 = 16;
const MAX_NEWEST_CANDIDATES: i64 = 4_096;

/// Reads the events table through the pool.
#[derive(Clone, Debug)]
pub(crate) struct Reader {
    pool: PgPool,
    names: Arc<SchemaNames>,
}

impl Reader {
    pub(crate) fn new(pool: PgPool, names: Arc<SchemaNames>) -> Self {
        Self { pool, names }
    }

    /// The pool it reads through.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// At most `limit` records (all with `None`) matching `query` after its
    /// `min_sequence_number`, and the context version, from one snapshot.
    ///
    /// A whole query (no `limit`) that finds records costs one statement:
    /// its context version is its last record. Otherwise one statement reads
    /// the first `limit` candidate rows after the cursor and the newest
    /// candidates of the whole log, for the context version. Only when
    /// candidates fail the shared matcher (jsonb containment lets through a
    /// few rows that do not match) do further statements read on, bounded by
    /// the newest candidate that statement saw: the log is append-only and
    /// its visible part is always a gapless prefix, so rows up to it read
    /// later are exactly the rows of that snapshot.
    pub(crate) async fn query(
        &self,
        query: &EventQuery,
        limit: Option<usize>,
    ) -> Result<QueryResult, EventStoreError> {
        let Some(candidates) = Candidates::of(query) else {
            return Ok(QueryResult {
                event_records: Vec::new(),
                last_returned_sequence_number: None,
                current_context_version: None,
            });
        };
        let candidates = &candidates;
        self.read("query failed", |mut connection| {
            Box::pin(async move {
                let result = match limit {
                    None => self.query_on(&mut connection, query, candidates).await,
                    Some(limit) => {
                        self.page_on(&mut connection, query, candidates, Some(limit))
                            .await
                    }
                };
                (connection, result)
            })
        })
        .await
    }

    /// A whole query: its records, and as context version the last of them;
    /// without records, the page read finds the version.
    async fn query_on(
        &self,
        connection: &mut PgConnection,
        query: &EventQuery,
        candidates: &Candidates,
    ) -> Result<QueryResult, sqlx::Error> {
        let after = query.min_sequence_number.unwrap_or(0);
        let sql = format!(
            "SELECT sequence_number, occurred_at, event_type, payload::text \
             FROM {events} WHERE sequence_number > $1 AND {condition} \
             ORDER BY sequence_number",
            events = self.names.events(),
            condition = candidates.condition(2),
        );
        let rows = candidates
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_stored(after)))
            .fetch_all(&mut *connection)
            .await?;
        let mut event_records = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(record) = decode_record(row, 0)?
                && query.matches_record(&record)
            {
                event_records.push(record);
            }
        }
        let Some(last) = event_records.last().map(|record| record.sequence_number) else {
            // The newest match lies at or before the cursor, if anywhere.
            return self.page_on(connection, query, candidates, None).await;
        };
        Ok(QueryResult {
            event_records,
            last_returned_sequence_number: Some(last),
            current_context_version: Some(last),
        })
    }

    /// At most `limit` records (all with `None`) and the context version,
    /// the newest candidates read by the same statement.
    async fn page_on(
        &self,
        connection: &mut PgConnection,
        query: &EventQuery,
        candidates: &Candidates,
        limit: Option<usize>,
    ) -> Result<QueryResult, sqlx::Error> {
        let after = query.min_sequence_number.unwrap_or(0);
        let limit = limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        // Without payload predicates the payload cannot change the decision.
        let newest_payload = if candidates.is_exact() {
            "NULL::text"
        } else {
            "payload::text"
        };
        // Parts: 1 the records after the cursor, 2 the newest candidates.
        let sql = format!(
            "(SELECT 1 AS part, sequence_number, occurred_at, event_type, payload::text AS payload \
              FROM {events} WHERE sequence_number > $1 AND {condition} \
              ORDER BY sequence_number LIMIT $2) \
             UNION ALL (SELECT 2, sequence_number, NULL::timestamptz, event_type, {newest_payload} \
                        FROM {events} WHERE {condition} \
                        ORDER BY sequence_number DESC LIMIT $3)",
            events = self.names.events(),
            condition = candidates.condition(4),
        );
        let rows = candidates
            .bind(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(to_stored(after))
                    .bind(limit)
                    .bind(NEWEST_CANDIDATES),
            )
            .fetch_all(&mut *connection)
            .await?;
        let mut candidate_rows = Vec::new();
        let mut newest = Vec::new();
        for row in &rows {
            if row.try_get::<i32, _>(0)? == 1 {
                candidate_rows.extend(decode_record(row, 1)?);
            } else {
                let sequence_number = stored_number(row.try_get(1)?, "sequence number")?;
                newest.push((sequence_number, row.try_get(3)?, row.try_get(4)?));
            }
        }
        newest.sort_by_key(|&(sequence_number, _, _)| std::cmp::Reverse(sequence_number));
        // The newest candidate of the snapshot: nothing after it can match.
        let Some(&(newest_candidate, _, _)) = newest.first() else {
            return Ok(QueryResult {
                event_records: Vec::new(),
                last_returned_sequence_number: None,
                current_context_version: None,
            });
        };
        candidate_rows.sort_by_key(|record| record.sequence_number);
        let read = candidate_rows.len();
        let last_candidate = candidate_rows.last().map(|record| record.sequence_number);
        let mut event_records: Vec<EventRecord> = candidate_rows
            .into_iter()
            .filter(|record| query.matches_record(record))
            .collect();
        // Candidates the matcher refused left the page short: read on.
        if let (Some(limit), Some(mut last)) = (limit, last_candidate) {
            let count = |records: usize| i64::try_from(records).unwrap_or(i64::MAX);
            let mut full = count(read) >= limit;
            while full && count(event_records.len()) < limit && last < newest_candidate {
                let wanted = limit - count(event_records.len());
                let more = self
                    .candidates_between(
                        connection,
                        candidates,
                        last,
                        newest_candidate,
                        Some(wanted),
                    )
                    .await?;
                full = count(more.len()) >= wanted;
                let Some(newest_read) = more.last() else {
                    break;
                };
                last = newest_read.0.sequence_number;
                event_records.extend(
                    more.into_iter()
                        .map(|(record, _)| record)
                        .filter(|record| query.matches_record(record)),
                );
            }
        }
        let last_returned_sequence_number =
            event_records.last().map(|record| record.sequence_number);
        let current_context_version = match newest_match_among(query, &newest)? {
            Some(version) => Some(version),
            None => match newest.last() {
                Some(&(oldest, _, _)) if newest.len() as i64 >= NEWEST_CANDIDATES => {
                    let bound = to_stored(oldest.saturating_sub(1));
                    newest_match(connection, &self.names, candidates, query, bound).await?
                }
                _ => None,
            },
        };
        Ok(QueryResult {
            event_records,
            last_returned_sequence_number,
            current_context_version,
        })
    }

    /// The candidate rows after `after` up to `through`, at most `limit`,
    /// with the last sequence number of their batch.
    async fn candidates_between(
        &self,
        connection: &mut PgConnection,
        candidates: &Candidates,
        after: u64,
        through: u64,
        limit: Option<i64>,
    ) -> Result<Vec<(EventRecord, u64)>, sqlx::Error> {
        let sql = format!(
            "SELECT sequence_number, batch_last_sequence_number, occurred_at, event_type, payload::text \
             FROM {events} WHERE sequence_number > $1 AND sequence_number <= $2 AND {condition} \
             ORDER BY sequence_number LIMIT $3",
            events = self.names.events(),
            condition = candidates.condition(4),
        );
        let rows = candidates
            .bind(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(to_stored(after))
                    .bind(to_stored(through))
                    .bind(limit),
            )
            .fetch_all(&mut *connection)
            .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(record) = decode_batch_row(row, 0)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Committed batches after `after` up to `through`, whole batches only,
    /// about `max_events` events per page (a batch is never split), narrowed
    /// by `query` when given. `scanned_through` never passes the log's head.
    pub(crate) async fn committed_batches(
        &self,
        after: u64,
        through: u64,
        query: Option<&EventQuery>,
        max_events: usize,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        if through <= after {
            return Ok(CommittedBatchPage {
                batches: Vec::new(),
                scanned_through: after,
            });
        }
        let candidates = match query {
            None => Candidates::of(&EventQuery::all()),
            Some(query) => Candidates::of(query),
        };
        let Some(candidates) = candidates else {
            // Nothing stored can match: the whole range is scanned.
            return Ok(CommittedBatchPage {
                batches: Vec::new(),
                scanned_through: through,
            });
        };
        let candidates = &candidates;
        let range = (after, through, max_events);
        self.read("reading committed batches failed", |mut connection| {
            Box::pin(async move {
                let result = self
                    .committed_batches_on(&mut connection, candidates, range)
                    .await;
                (connection, result)
            })
        })
        .await
    }

    async fn committed_batches_on(
        &self,
        connection: &mut PgConnection,
        candidates: &Candidates,
        (after, through, max_events): (u64, u64, usize),
    ) -> Result<CommittedBatchPage, sqlx::Error> {
        let limit = i64::try_from(max_events.max(1)).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT h.head, e.sequence_number, e.batch_last_sequence_number, e.occurred_at, \
                    e.event_type, e.payload \
             FROM (SELECT MAX(sequence_number) AS head FROM {events}) AS h \
             LEFT JOIN (SELECT sequence_number, batch_last_sequence_number, occurred_at, event_type, \
                               payload::text AS payload \
                        FROM {events} \
                        WHERE sequence_number > $1 AND sequence_number <= $2 AND {condition} \
                        ORDER BY sequence_number LIMIT $3) AS e ON TRUE \
             ORDER BY e.sequence_number",
            events = self.names.events(),
            condition = candidates.condition(4),
        );
        let rows = candidates
            .bind(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(to_stored(after))
                    .bind(to_stored(through))
                    .bind(limit),
            )
            .fetch_all(&mut *connection)
            .await?;
        let mut head = None;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            head = decode_head(row)?;
            if let Some(record) = decode_batch_row(row, 1)? {
                records.push(record);
            }
        }
        let full = i64::try_from(records.len()).unwrap_or(i64::MAX) >= limit;
        let last_row = records
            .last()
            .map(|(record, batch_last)| (record.sequence_number, *batch_last));
        let scanned_through = match last_row {
            Some((last_sequence_number, batch_last)) if full => {
                let batch_end = batch_last.min(through);
                if batch_end > last_sequence_number {
                    // The page ends inside a batch: read the rest of it.
                    let rest = self
                        .candidates_between(
                            connection,
                            candidates,
                            last_sequence_number,
                            batch_end,
                            None,
                        )
                        .await?;
                    records.extend(rest);
                }
                batch_end
            }
            _ => head.unwrap_or(after).clamp(after, through),
        };
        Ok(CommittedBatchPage {
            batches: group_into_batches(records),
            scanned_through,
        })
    }

    /// The greatest sequence number in the log, 0 when it is empty.
    pub(crate) async fn head(&self) -> Result<u64, EventStoreError> {
        let sql = format!("SELECT MAX(sequence_number) FROM {}", self.names.events());
        let sql = &sql;
        self.read(
            "reading the last sequence number failed",
            |mut connection| {
                Box::pin(async move {
                    let head: Result<Option<i64>, sqlx::Error> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                            .fetch_one(&mut *connection)
                            .await;
                    let head = head.and_then(|head| {
                        head.map_or(Ok(0), |head| stored_number(head, "sequence number"))
                    });
                    (connection, head)
                })
            },
        )
        .await
    }

    /// Runs `read` on a pooled connection. Pooled connections are not
    /// checked before use (that would cost a round trip per read); one that
    /// died while idle (the server restarted) is closed and the read runs
    /// again on another. Reads change nothing, so repeating one is safe.
    async fn read<'a, T>(
        &self,
        what: &str,
        read: impl Fn(PoolConnection<Postgres>) -> ReadFuture<'a, T> + Send,
    ) -> Result<T, EventStoreError> {
        // Every pooled connection may have died with the server.
        let attempts = self.pool.options().get_max_connections() + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = self
                .pool
                .acquire()
                .await
                .map_err(|error| database_failure(what, &error))?;
            let (mut connection, result) = read(connection).await;
            match result {
                Err(error) if is_connection_lost(&error) => {
                    connection.close_on_drop();
                    if attempt >= attempts {
                        return Err(database_failure(what, &error));
                    }
                }
                other => return other.map_err(|error| database_failure(what, &error)),
            }
        }
    }
}

/// A read on a pooled connection that hands the connection back.
type ReadFuture<'a, T> =
    Pin<Box<dyn Future<Output = (PoolConnection<Postgres>, Result<T, sqlx::Error>)> + Send + 'a>>;

/// The first of `rows` (sequence number, event type, payload if needed;
/// newest first) the shared matcher accepts.
pub(crate) fn newest_match_among(
    query: &EventQuery,
    rows: &[(u64, String, Option<String>)],
) -> Result<Option<u64>, sqlx::Error> {
    for (sequence_number, event_type, payload) in rows {
        let payload = match payload {
            Some(text) => parse_payload(*sequence_number, text)?,
            None => Value::Null,
        };
        if query.matches(event_type, &payload) {
            return Ok(Some(*sequence_number));
        }
    }
    Ok(None)
}

/// Walks the candidates downwards from `bound` until the shared matcher
/// accepts one.
pub(crate) async fn newest_match(
    connection: &mut PgConnection,
    names: &SchemaNames,
    candidates: &Candidates,
    query: &EventQuery,
    bound: i64,
) -> Result<Option<u64>, sqlx::Error> {
    // Without payload predicates the payload cannot change the decision.
    let payload = if candidates.is_exact() {
        "NULL::text"
    } else {
        "payload::text"
    };
    let sql = format!(
        "SELECT sequence_number, event_type, {payload} FROM {events} \
         WHERE sequence_number <= $1 AND {condition} \
         ORDER BY sequence_number DESC LIMIT $2",
        events = names.events(),
        condition = candidates.condition(3),
    );
    let mut upper = bound;
    let mut limit = FIRST_NEWEST_CANDIDATES;
    while upper > 0 {
        let rows = candidates
            .bind(
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(upper)
                    .bind(limit),
            )
            .fetch_all(&mut *connection)
            .await?;
        for row in &rows {
            let sequence_number = stored_number(row.try_get(0)?, "sequence number")?;
            let event_type: String = row.try_get(1)?;
            let payload = match row.try_get::<Option<String>, _>(2)? {
                Some(text) => parse_payload(sequence_number, &text)?,
                None => Value::Null,
            };
            if query.matches(&event_type, &payload) {
                return Ok(Some(sequence_number));
            }
            upper = to_stored(sequence_number) - 1;
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit {
            break;
        }
        limit = (limit * 4).min(MAX_NEWEST_CANDIDATES);
    }
    Ok(None)
}
