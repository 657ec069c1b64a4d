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

use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use chrono::{DateTime, Utc};
use factstr::backend::commit_timestamp;
use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::{AppendResult, EventQuery, EventRecord, EventStoreError, NewEvent};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::error::{database_failure, is_connection_lost};
use crate::listener::CommitNews;
use crate::log::{context_version, from_database, to_database};
use crate::schema::SchemaNames;
use crate::sql::contains_nul;
use crate::store::Connector;

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 10_000;

/// An append waiting for the writer.
pub(crate) struct AppendRequest {
    batch: PreparedBatch,
    condition: Option<Condition>,
    reply: SyncSender<Result<AppendResult, EventStoreError>>,
}

impl AppendRequest {
    pub(crate) fn new(
        batch: PreparedBatch,
        condition: Option<(EventQuery, Option<u64>)>,
        reply: SyncSender<Result<AppendResult, EventStoreError>>,
    ) -> Self {
        Self {
            batch,
            condition: condition.map(|(query, expected)| Condition { query, expected }),
            reply,
        }
    }
}

struct Condition {
    query: EventQuery,
    expected: Option<u64>,
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
    Conflict {
        expected: Option<u64>,
        actual: Option<u64>,
    },
}

/// What went wrong with a group, and whether it may be tried again.
enum Failure {
    /// Nothing was committed; on a lost connection the group may be retried.
    BeforeCommit(EventStoreError, bool),
    /// The commit itself failed: whether it took effect is unknown.
    AtCommit(EventStoreError),
}

pub(crate) struct Writer {
    connector: Connector,
    names: Arc<SchemaNames>,
    connection: Option<PgConnection>,
    news: mpsc::UnboundedSender<CommitNews>,
}

impl Writer {
    pub(crate) fn new(
        connector: Connector,
        names: Arc<SchemaNames>,
        news: mpsc::UnboundedSender<CommitNews>,
    ) -> Self {
        Self {
            connector,
            names,
            connection: None,
            news,
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
        let mut outcome = self.try_commit(&group).await;
        if let Err(Failure::BeforeCommit(_, true)) = outcome {
            // The connection died before anything was committed (the server
            // restarted since the last append): once more on a new one.
            self.connection = None;
            outcome = self.try_commit(&group).await;
        }
        let (occurred_at, decisions) = match outcome {
            Ok(decided) => decided,
            Err(Failure::BeforeCommit(error, _)) | Err(Failure::AtCommit(error)) => {
                // The connection's state is unknown: use a new one next time.
                self.connection = None;
                for request in group {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return;
            }
        };
        for (request, decision) in group.into_iter().zip(decisions) {
            let result = match decision {
                Decision::Conflict { expected, actual } => {
                    Err(EventStoreError::ConditionalAppendConflict { expected, actual })
                }
                Decision::Accepted { first, last } => {
                    let records = request
                        .batch
                        .events
                        .into_iter()
                        .zip(first..)
                        .map(|(event, sequence_number)| EventRecord {
                            sequence_number,
                            occurred_at,
                            event_type: event.event_type,
                            payload: event.payload,
                        })
                        .collect();
                    let _ = self.news.send(CommitNews::Committed(records));
                    Ok(AppendResult {
                        first_sequence_number: first,
                        last_sequence_number: last,
                        committed_count: last - first + 1,
                    })
                }
            };
            let _ = request.reply.send(result);
        }
    }

    async fn try_commit(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<(DateTime<Utc>, Vec<Decision>), Failure> {
        let before = |what: &str| {
            let what = what.to_owned();
            move |error: sqlx::Error| {
                Failure::BeforeCommit(database_failure(&what, &error), is_connection_lost(&error))
            }
        };
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
        let mut transaction = connection
            .begin()
            .await
            .map_err(before("cannot begin the append transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.names.append_lock_key)
            .execute(&mut *transaction)
            .await
            .map_err(before("cannot take the append lock"))?;
        let head_sql = format!(
            "SELECT sequence_number, occurred_at FROM {} ORDER BY sequence_number DESC LIMIT 1",
            self.names.events
        );
        let head: Option<(i64, DateTime<Utc>)> = sqlx::query_as(sqlx::AssertSqlSafe(head_sql))
            .fetch_optional(&mut *transaction)
            .await
            .map_err(before("cannot read the last sequence number"))?;
        let last_committed = head.map_or(0, |(sequence_number, _)| from_database(sequence_number));
        let occurred_at = commit_timestamp(head.map(|(_, occurred_at)| occurred_at));

        let mut decisions = Vec::with_capacity(group.len());
        let mut next = last_committed + 1;
        for request in group {
            if let Some(condition) = &request.condition {
                let actual = match newest_match_in_group(&condition.query, group, &decisions) {
                    Some(sequence_number) => Some(sequence_number),
                    None => context_version(
                        &mut transaction,
                        &self.names,
                        &condition.query,
                        last_committed,
                    )
                    .await
                    .map_err(before("cannot check the context of a conditional append"))?,
                };
                if actual != condition.expected {
                    decisions.push(Decision::Conflict {
                        expected: condition.expected,
                        actual,
                    });
                    continue;
                }
            }
            let first = next;
            let last = first + request.batch.len() as u64 - 1;
            next = last + 1;
            decisions.push(Decision::Accepted { first, last });
        }
        if next - 1 > MAX_SEQUENCE_NUMBER {
            return Err(Failure::BeforeCommit(
                EventStoreError::backend("the log has used up every sequence number"),
                false,
            ));
        }
        if next > last_committed + 1 {
            insert(
                &self.names,
                &mut transaction,
                group,
                &decisions,
                occurred_at,
                next - 1,
            )
            .await
            .map_err(before("cannot insert the appended events"))?;
        }
        transaction.commit().await.map_err(|error| {
            Failure::AtCommit(database_failure(
                "committing the append failed; it may or may not have taken effect",
                &error,
            ))
        })?;
        Ok((occurred_at, decisions))
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
            sequence_numbers.push(to_database(first + offset as u64));
            batch_lasts.push(to_database(last));
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

/// The newest event accepted earlier in this group that matches `query`.
fn newest_match_in_group(
    query: &EventQuery,
    group: &[AppendRequest],
    decisions: &[Decision],
) -> Option<u64> {
    group
        .iter()
        .zip(decisions)
        .rev()
        .find_map(|(request, decision)| {
            let Decision::Accepted { first, .. } = *decision else {
                return None;
            };
            request
                .batch
                .events
                .iter()
                .enumerate()
                .rev()
                .find(|(_, event)| query.matches(&event.event_type, &event.payload))
                .map(|(offset, _)| first + offset as u64)
        })
}
