//! Appends: one writer task per store commits the appends waiting at the
//! same moment in one transaction (group commit).
//!
//! Each transaction takes the schema's append lock
//! (`pg_advisory_xact_lock`, released at commit or rollback), so appends of
//! every process on the schema are serialized and sequence numbers follow
//! commit order without gaps: the next number is the greatest stored one
//! plus one, read after the lock was granted. Inside the transaction every
//! request is decided in order: a conditional append is checked against the
//! stored events and the batches accepted before it in the same group, and
//! a conflict leaves the other requests untouched. All accepted rows are
//! inserted by one statement (arrays through `UNNEST`) that also sends the
//! commit notification, so a group costs the same few round trips as a
//! single append, and one commit.
//!
//! Each request succeeds or fails on its own, also when the database
//! refuses rows (a constraint or trigger of the operator's, a value the
//! server cannot hold): when the group's insert fails with such an error,
//! the transaction is rolled back and the group committed again with every
//! request decided and inserted in a savepoint of its own, so that only the
//! requests whose rows were refused fail. A group of one request fails at
//! once. The fast path carries no savepoint.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use chrono::{DateTime, Utc};
use factstr::backend::sequence::{next_range, to_stored};
use factstr::backend::{Condition, commit_timestamp, committed_batch, newest_match_in_group};
use factstr::{AppendResult, EventQuery, EventStoreError, NewEvent};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use crate::error::{database_failure, is_connection_lost};
use crate::log::{PostgresLog, newest_match, parse_payload, stored_number};
use crate::schema::SchemaNames;
use crate::sql::{Candidates, contains_nul};
use crate::store::Connector;

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 10_000;
/// The log length from which the writer refreshes planner statistics.
const ANALYZE_FROM_EVENTS: u64 = 100;

/// An append waiting for the writer.
pub(crate) struct AppendRequest {
    batch: PreparedBatch,
    condition: Option<Condition>,
    reply: SyncSender<Result<AppendResult, EventStoreError>>,
}

impl AppendRequest {
    pub(crate) fn new(
        batch: PreparedBatch,
        condition: Option<Condition>,
        reply: SyncSender<Result<AppendResult, EventStoreError>>,
    ) -> Self {
        Self {
            batch,
            condition,
            reply,
        }
    }
}

/// A batch checked for what PostgreSQL can store, with its payloads
/// serialized (done by the caller's thread, outside the writer).
pub(crate) struct PreparedBatch {
    events: Vec<NewEvent>,
    payloads: Vec<String>,
}

impl PreparedBatch {
    /// Refuses NUL characters in event types and payload strings or keys
    /// (PostgreSQL text and jsonb cannot hold them) with `InvalidInput`.
    pub(crate) fn new(events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut payloads = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if event.event_type.contains('\0') {
                return Err(EventStoreError::invalid_input(format!(
                    "event {index} of the batch has an event_type with a NUL character ({:?}), \
                     which PostgreSQL cannot store",
                    event.event_type
                )));
            }
            if contains_nul(&event.payload) {
                return Err(EventStoreError::invalid_input(format!(
                    "the payload of event {index} of the batch (event_type `{}`) has a NUL \
                     character in a string or key, which PostgreSQL cannot store",
                    event.event_type
                )));
            }
            payloads.push(event.payload.to_string());
        }
        Ok(Self { events, payloads })
    }

    fn len(&self) -> usize {
        self.events.len()
    }
}

/// How one request of a group was decided.
enum Decision {
    Accepted {
        first: u64,
        last: u64,
    },
    /// Not appended: its condition failed, or the database refused its rows.
    Rejected(EventStoreError),
}

/// What went wrong with a group, and whether it may be tried again.
enum Failure {
    /// Nothing was committed; on a lost connection the group may be retried.
    BeforeCommit(EventStoreError, bool),
    /// The database refused the rows of some request of the group, and the
    /// transaction was rolled back: commit the group again, each request on
    /// its own.
    RowsRefused,
    /// The commit itself failed: whether it took effect is unknown.
    AtCommit(EventStoreError),
}

/// How a group's requests are inserted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Insertion {
    /// All accepted rows in one statement.
    Together,
    /// Each request decided and inserted in a savepoint of its own.
    EachOnItsOwn,
}

/// The savepoint each request is inserted in when the group is committed
/// again request by request.
const REQUEST_SAVEPOINT: &str = "factstr_request";

pub(crate) struct Writer {
    connector: Connector,
    names: Arc<SchemaNames>,
    connection: Option<PgConnection>,
    /// Where committed batches are published.
    log: Arc<PostgresLog>,
    pool: PgPool,
    /// The log's length when this writer last refreshed the planner's
    /// statistics.
    analyzed_through: u64,
}

impl Writer {
    pub(crate) fn new(
        connector: Connector,
        names: Arc<SchemaNames>,
        log: Arc<PostgresLog>,
        pool: PgPool,
    ) -> Self {
        Self {
            connector,
            names,
            connection: None,
            log,
            pool,
            analyzed_through: 0,
        }
    }

    /// Commits requests until the store closes.
    pub(crate) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<AppendRequest>) {
        while let Some(first) = requests.recv().await {
            let mut events = first.batch.len();
            let mut group = vec![first];
            while events < MAX_GROUP_EVENTS {
                match requests.try_recv() {
                    Ok(request) => {
                        events += request.batch.len();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let mut outcome = self.try_commit(&group, Insertion::Together).await;
        if let Err(Failure::BeforeCommit(_, true)) = outcome {
            // The connection died before anything was committed (the server
            // restarted since the last append): once more on a new one.
            self.connection = None;
            outcome = self.try_commit(&group, Insertion::Together).await;
        }
        if let Err(Failure::RowsRefused) = outcome {
            outcome = self.try_commit(&group, Insertion::EachOnItsOwn).await;
        }
        let (occurred_at, decisions) = match outcome {
            Ok(decided) => decided,
            Err(failure) => {
                let error = match failure {
                    Failure::BeforeCommit(error, _) | Failure::AtCommit(error) => error,
                    // Only `Together` reports it, and that was retried above.
                    Failure::RowsRefused => EventStoreError::backend(
                        "PostgreSQL refused the events of a group of appends",
                    ),
                };
                // The connection's state is unknown: use a new one next time.
                self.connection = None;
                for request in group {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return;
            }
        };
        if let Some(Decision::Accepted { last, .. }) = decisions
            .iter()
            .rev()
            .find(|decision| matches!(decision, Decision::Accepted { .. }))
        {
            self.refresh_statistics(*last);
        }
        for (request, decision) in group.into_iter().zip(decisions) {
            let result = match decision {
                Decision::Rejected(error) => Err(error),
                Decision::Accepted { first, .. } => {
                    let (result, records) =
                        committed_batch(request.batch.events, first, occurred_at);
                    // Before the caller hears of it, so that a stream
                    // unsubscribed or a store closed after `append`
                    // returned still delivers this batch.
                    self.log.publish(records);
                    Ok(result)
                }
            };
            let _ = request.reply.send(result);
        }
    }

    /// Runs `ANALYZE` on the events table in the background whenever the
    /// log has doubled since the last time (from 100 events on).
    ///
    /// Whether a context is answered by walking the log backwards or through
    /// the GIN index depends on how common its events are; the planner needs
    /// statistics to choose, and autovacuum refreshes them at most once a
    /// minute, which a young, fast-growing log outruns.
    fn refresh_statistics(&mut self, last_committed: u64) {
        if last_committed < ANALYZE_FROM_EVENTS || last_committed < 2 * self.analyzed_through {
            return;
        }
        self.analyzed_through = last_committed;
        let pool = self.pool.clone();
        let sql = format!("ANALYZE {}", self.names.events);
        tokio::spawn(async move {
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                tracing::debug!(%error, "refreshing the planner statistics of the events table failed");
            }
        });
    }

    async fn try_commit(
        &mut self,
        group: &[AppendRequest],
        insertion: Insertion,
    ) -> Result<(DateTime<Utc>, Vec<Decision>), Failure> {
        let names = Arc::clone(&self.names);
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty => {
                let connection = self
                    .connector
                    .connect("append")
                    .await
                    .map_err(|error| Failure::BeforeCommit(error, false))?;
                empty.insert(connection)
            }
        };
        // BEGIN and the lock in one round trip (the key is a number this
        // code derived, not input). The statements after it see every
        // append committed before the lock was granted.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            names.append_lock_key
        )))
        .execute(&mut *connection)
        .await
        .map_err(before("cannot take the append lock"))?;
        let snapshot = read_head_and_contexts(connection, &names, group)
            .await
            .map_err(before(
                "cannot read the last sequence number and the append contexts",
            ))?;
        let last_committed = snapshot
            .head
            .map_or(0, |(sequence_number, _)| sequence_number);
        let occurred_at = commit_timestamp(snapshot.head.map(|(_, occurred_at)| occurred_at));

        let mut decisions = Vec::with_capacity(group.len());
        let mut last_assigned = last_committed;
        let mut savepoint_open = false;
        for (index, stored_candidates) in snapshot.contexts.iter().enumerate() {
            let mut decision = decide(
                connection,
                &names,
                group,
                &decisions,
                index,
                stored_candidates,
                last_assigned,
            )
            .await?;
            if insertion == Insertion::EachOnItsOwn && matches!(decision, Decision::Accepted { .. })
            {
                if let Some(refused) = insert_on_its_own(
                    &names,
                    connection,
                    &group[index],
                    &decision,
                    occurred_at,
                    savepoint_open,
                )
                .await?
                {
                    decision = Decision::Rejected(refused);
                }
                savepoint_open = true;
            }
            if let Decision::Accepted { last, .. } = decision {
                last_assigned = last;
            }
            decisions.push(decision);
        }
        if insertion == Insertion::Together && last_assigned > last_committed {
            let inserted = insert(
                &names,
                connection,
                group,
                &decisions,
                occurred_at,
                last_assigned,
            )
            .await;
            if let Err(error) = inserted {
                if is_connection_lost(&error) || !matches!(error, sqlx::Error::Database(_)) {
                    return Err(before("cannot insert the appended events")(error));
                }
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut *connection)
                    .await
                    .map_err(before("cannot roll back an append the database refused"))?;
                // A lone request fails on its own already. In a larger group
                // any request may be the one refused, and a conditional
                // append may have been decided against it.
                return match decisions.as_mut_slice() {
                    [only] => {
                        *only = Decision::Rejected(refused(&error));
                        Ok((occurred_at, decisions))
                    }
                    _ => Err(Failure::RowsRefused),
                };
            }
        }
        sqlx::raw_sql("COMMIT")
            .execute(&mut *connection)
            .await
            .map_err(|error| {
                Failure::AtCommit(database_failure(
                    "committing the append failed; it may or may not have taken effect",
                    &error,
                ))
            })?;
        Ok((occurred_at, decisions))
    }
}

/// A failure before the commit, saying `what` failed; retryable when the
/// connection was lost.
fn before(what: &str) -> impl FnOnce(sqlx::Error) -> Failure {
    let what = what.to_owned();
    move |error: sqlx::Error| {
        Failure::BeforeCommit(database_failure(&what, &error), is_connection_lost(&error))
    }
}

/// The error of an append whose rows the database refused.
fn refused(error: &sqlx::Error) -> EventStoreError {
    database_failure("PostgreSQL refused the events of this append", error)
}

/// Decides request `index` of `group` against the stored candidates of its
/// context and the requests decided before it (`decided`); accepted, it
/// takes the sequence numbers after `last_assigned`.
async fn decide(
    connection: &mut PgConnection,
    names: &SchemaNames,
    group: &[AppendRequest],
    decided: &[Decision],
    index: usize,
    stored_candidates: &StoredCandidates,
    last_assigned: u64,
) -> Result<Decision, Failure> {
    let request = &group[index];
    if let Some(condition) = &request.condition {
        let accepted_earlier =
            group
                .iter()
                .zip(decided)
                .filter_map(|(request, decision)| match *decision {
                    Decision::Accepted { first, .. } => {
                        Some((first, request.batch.events.as_slice()))
                    }
                    Decision::Rejected(_) => None,
                });
        let actual = match newest_match_in_group(&condition.query, accepted_earlier) {
            Some(sequence_number) => Some(sequence_number),
            None => stored_candidates
                .newest_match(connection, names, &condition.query)
                .await
                .map_err(before("cannot check the context of a conditional append"))?,
        };
        if let Err(conflict) = condition.check(actual) {
            return Ok(Decision::Rejected(conflict));
        }
    }
    let (first, last) = next_range(last_assigned, request.batch.len())
        .map_err(|error| Failure::BeforeCommit(error, false))?;
    Ok(Decision::Accepted { first, last })
}

/// Inserts one accepted request in a savepoint of its own and returns the
/// database's refusal, if any, with the savepoint rolled back.
/// `savepoint_open` says that an earlier request's savepoint is still open
/// (it is released first, so savepoints do not nest).
async fn insert_on_its_own(
    names: &SchemaNames,
    connection: &mut PgConnection,
    request: &AppendRequest,
    decision: &Decision,
    occurred_at: DateTime<Utc>,
    savepoint_open: bool,
) -> Result<Option<EventStoreError>, Failure> {
    let Decision::Accepted { last, .. } = *decision else {
        return Ok(None);
    };
    let open = if savepoint_open {
        format!("RELEASE SAVEPOINT {REQUEST_SAVEPOINT}; SAVEPOINT {REQUEST_SAVEPOINT}")
    } else {
        format!("SAVEPOINT {REQUEST_SAVEPOINT}")
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(open))
        .execute(&mut *connection)
        .await
        .map_err(before("cannot insert the appended events"))?;
    let inserted = insert(
        names,
        connection,
        std::slice::from_ref(request),
        std::slice::from_ref(decision),
        occurred_at,
        last,
    )
    .await;
    match inserted {
        Ok(()) => Ok(None),
        Err(error) if is_connection_lost(&error) || !matches!(error, sqlx::Error::Database(_)) => {
            Err(before("cannot insert the appended events")(error))
        }
        Err(error) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ROLLBACK TO SAVEPOINT {REQUEST_SAVEPOINT}"
            )))
            .execute(&mut *connection)
            .await
            .map_err(before("cannot roll back an append the database refused"))?;
            Ok(Some(refused(&error)))
        }
    }
}

/// Inserts the accepted batches in one statement that also notifies
/// listeners (delivered when the transaction commits).
async fn insert(
    names: &SchemaNames,
    connection: &mut PgConnection,
    group: &[AppendRequest],
    decisions: &[Decision],
    occurred_at: DateTime<Utc>,
    last: u64,
) -> Result<(), sqlx::Error> {
    let mut sequence_numbers = Vec::new();
    let mut batch_lasts = Vec::new();
    let mut event_types = Vec::new();
    let mut payloads = Vec::new();
    for (request, decision) in group.iter().zip(decisions) {
        let Decision::Accepted { first, last } = *decision else {
            continue;
        };
        for (offset, (event, payload)) in request
            .batch
            .events
            .iter()
            .zip(&request.batch.payloads)
            .enumerate()
        {
            sequence_numbers.push(to_stored(first + offset as u64));
            batch_lasts.push(to_stored(last));
            event_types.push(event.event_type.as_str());
            payloads.push(payload.as_str());
        }
    }
    let sql = format!(
        "WITH inserted AS (
                INSERT INTO {events}
                    (sequence_number, batch_last_sequence_number, occurred_at, event_type, payload)
                SELECT s, b, $3, t, p::json
                FROM UNNEST($1::bigint[], $2::bigint[], $4::text[], $5::text[]) AS u(s, b, t, p)
            )
            SELECT pg_notify($6, $7)",
        events = names.events
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&sequence_numbers)
        .bind(&batch_lasts)
        .bind(occurred_at)
        .bind(&event_types)
        .bind(&payloads)
        .bind(&names.channel)
        .bind(last.to_string())
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// What an append transaction reads right after taking the lock, in one
/// statement: the last stored event, and the newest candidates of each
/// conditional request's context.
struct LockedSnapshot {
    head: Option<(u64, DateTime<Utc>)>,
    /// One entry per request of the group, in order.
    contexts: Vec<StoredCandidates>,
}

/// The newest stored candidates of one request's context.
enum StoredCandidates {
    /// Not a conditional append, or nothing stored can match its context.
    None,
    Read {
        candidates: Candidates,
        /// Newest first: (sequence number, event type, payload if needed).
        rows: Vec<(u64, String, Option<String>)>,
    },
}

/// Candidates read per context in the locked statement; a context whose
/// newest candidates all fail the matcher reads further (rare).
const LOCKED_CANDIDATES: i64 = 4;

async fn read_head_and_contexts(
    connection: &mut PgConnection,
    names: &SchemaNames,
    group: &[AppendRequest],
) -> Result<LockedSnapshot, sqlx::Error> {
    let mut contexts: Vec<StoredCandidates> = group
        .iter()
        .map(|request| {
            request
                .condition
                .as_ref()
                .and_then(|condition| Candidates::of(&condition.query))
                .map_or(StoredCandidates::None, |candidates| {
                    StoredCandidates::Read {
                        candidates,
                        rows: Vec::new(),
                    }
                })
        })
        .collect();
    let mut sql = format!(
        "(SELECT -1 AS request, sequence_number, NULL::text AS event_type, NULL::text AS payload, \
                 occurred_at \
          FROM {events} ORDER BY sequence_number DESC LIMIT 1)",
        events = names.events
    );
    let mut placeholder = 2;
    for (index, context) in contexts.iter().enumerate() {
        let StoredCandidates::Read { candidates, .. } = context else {
            continue;
        };
        let payload = if candidates.is_exact() {
            "NULL::text"
        } else {
            "payload::text"
        };
        let _ = write!(
            sql,
            " UNION ALL (SELECT {index}, sequence_number, event_type, {payload}, NULL::timestamptz \
                         FROM {events} WHERE {condition} \
                         ORDER BY sequence_number DESC LIMIT $1)",
            events = names.events,
            condition = candidates.condition(placeholder),
        );
        placeholder += candidates.parameter_count();
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(LOCKED_CANDIDATES);
    for context in &contexts {
        if let StoredCandidates::Read { candidates, .. } = context {
            query = candidates.bind(query);
        }
    }
    let mut head = None;
    for row in query.fetch_all(&mut *connection).await? {
        let request: i32 = row.try_get(0)?;
        let sequence_number = stored_number(row.try_get(1)?, "sequence number")?;
        match usize::try_from(request)
            .ok()
            .and_then(|index| contexts.get_mut(index))
        {
            None => head = Some((sequence_number, row.try_get(4)?)),
            Some(StoredCandidates::Read { rows, .. }) => {
                rows.push((sequence_number, row.try_get(2)?, row.try_get(3)?));
            }
            Some(StoredCandidates::None) => {}
        }
    }
    Ok(LockedSnapshot { head, contexts })
}

impl StoredCandidates {
    /// The context version among the stored events: the newest candidate
    /// the shared matcher accepts, reading further when all read ones fail.
    async fn newest_match(
        &self,
        connection: &mut PgConnection,
        names: &SchemaNames,
        query: &EventQuery,
    ) -> Result<Option<u64>, sqlx::Error> {
        let Self::Read { candidates, rows } = self else {
            return Ok(None);
        };
        for (sequence_number, event_type, payload) in rows {
            let payload = match payload {
                Some(text) => parse_payload(*sequence_number, text)?,
                None => Value::Null,
            };
            if query.matches(event_type, &payload) {
                return Ok(Some(*sequence_number));
            }
        }
        match rows.last() {
            Some(&(oldest, _, _)) if rows.len() as i64 >= LOCKED_CANDIDATES => {
                newest_match(
                    connection,
                    names,
                    candidates,
                    query,
                    to_stored(oldest.saturating_sub(1)),
                )
                .await
            }
            _ => Ok(None),
        }
    }
}
