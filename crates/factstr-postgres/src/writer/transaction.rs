//! One group's append transaction: the append lock, the decision of every
//! request in order, the insert and the commit.
//!
//! The transaction takes the schema's append lock
//! (`pg_advisory_xact_lock`, released at commit or rollback), so appends of
//! every process on the schema are serialized and sequence numbers follow
//! commit order without gaps: the next number is the greatest stored one
//! plus one, read after the lock was granted. Every request is decided in
//! order: a conditional append is checked against the stored events and the
//! batches accepted before it in the same group, and a conflict leaves the
//! other requests untouched. All accepted rows are inserted by one statement
//! (arrays through `UNNEST`) that also sends the commit notification, so a
//! group costs the same few round trips as a single append, and one commit.
//!
//! When the database refuses the rows of a group (a constraint or trigger
//! of the operator's, a value the server cannot hold), the transaction is
//! rolled back and the writer commits the group again with
//! [`Insertion::EachOnItsOwn`]: every request decided and inserted in a
//! savepoint of its own, so that only the requests whose rows were refused
//! fail. A group of one request fails at once. The fast path carries no
//! savepoint.
//!
//! A lone plain append whose writer knows the log's head (nothing was
//! appended since its own last commit) takes one round trip instead:
//! [`append_alone`].

use chrono::{DateTime, Utc};
use factstr::backend::sequence::{next_range, to_stored};
use factstr::backend::{Condition, commit_timestamp, newest_match_in_group};
use factstr::{EventStoreError, NewEvent};
use sqlx::PgConnection;

use super::snapshot::{StoredCandidates, read_head_and_contexts};
use crate::error::{database_failure, is_connection_lost};
use crate::rows::PreparedBatch;
use crate::schema::SchemaNames;

/// One append of a group: its events and, for `append_if`, its condition.
pub(super) struct Append {
    batch: PreparedBatch,
    condition: Option<Condition>,
}

impl Append {
    pub(super) fn new(batch: PreparedBatch, condition: Option<Condition>) -> Self {
        Self { batch, condition }
    }

    /// How many events it appends.
    pub(super) fn len(&self) -> usize {
        self.batch.len()
    }

    pub(super) fn condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// Its events, once committed.
    pub(super) fn into_events(self) -> Vec<NewEvent> {
        self.batch.into_events()
    }
}

/// How one request of a group was decided.
pub(super) enum Decision {
    Accepted {
        first: u64,
        last: u64,
    },
    /// Not appended: its condition failed, or the database refused its rows.
    Rejected(EventStoreError),
}

/// What went wrong with a group, and whether it may be tried again.
pub(super) enum Failure {
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
pub(super) enum Insertion {
    /// All accepted rows in one statement.
    Together,
    /// Each request decided and inserted in a savepoint of its own.
    EachOnItsOwn,
}

/// The savepoint each request is inserted in when the group is committed
/// again request by request.
const REQUEST_SAVEPOINT: &str = "factstr_request";

/// Commits `group` on `connection`: the decision of each request and the
/// commit time of the accepted ones.
pub(super) async fn commit(
    connection: &mut PgConnection,
    names: &SchemaNames,
    group: &[Append],
    insertion: Insertion,
) -> Result<(DateTime<Utc>, Vec<Decision>), Failure> {
    // BEGIN and the lock in one round trip (the key is a number this
    // code derived, not input). The statements after it see every
    // append committed before the lock was granted. Their plans depend on
    // the contexts they read (see `session_options`): planned per execution
    // here, while the writer's session keeps generic plans for the lone
    // append's statement (see `Writer::try_commit`).
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; SELECT pg_advisory_xact_lock({})",
        names.append_lock_key()
    )))
    .execute(&mut *connection)
    .await
    .map_err(before("cannot take the append lock"))?;
    let snapshot = read_head_and_contexts(connection, names, group.iter().map(Append::condition))
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
            names,
            group,
            &decisions,
            index,
            stored_candidates,
            last_assigned,
        )
        .await?;
        if insertion == Insertion::EachOnItsOwn && matches!(decision, Decision::Accepted { .. }) {
            if let Some(refused) = insert_on_its_own(
                names,
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
            names,
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
    group: &[Append],
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
                    Decision::Accepted { first, .. } => Some((first, request.batch.events())),
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
    request: &Append,
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

/// The log's head as a writer last saw it: its last sequence number (0 for
/// an empty log) and that event's commit time.
#[derive(Clone, Copy, Debug)]
pub(super) struct KnownHead {
    pub(super) last: u64,
    pub(super) occurred_at: DateTime<Utc>,
}

/// How a lone append on the one-statement path ended.
pub(super) enum LoneOutcome {
    /// Committed as `first..=last` at `occurred_at`.
    Committed {
        occurred_at: DateTime<Utc>,
        first: u64,
        last: u64,
    },
    /// Nothing was committed (the head moved, or the database refused the
    /// statement): commit it through the transaction.
    NotApplied,
    /// The connection failed while the statement was under way: whether it
    /// took effect is unknown.
    Unknown(EventStoreError),
}

/// Appends `append` (a plain append) in one statement, its own implicit
/// transaction, if the log's head is still `head`: one round trip and one
/// commit, where the transaction costs four round trips.
///
/// The statement takes the append lock, so commits of every process stay
/// serialized, and inserts after `head` only if the log's last sequence
/// number still is `head.last`. Its snapshot is taken before the lock is
/// granted, so it may miss a batch another process committed meanwhile; it
/// then inserts sequence numbers that batch holds and the primary key
/// refuses it: either way nothing is committed unless the batch follows
/// `head` directly, and the caller commits through the transaction then.
pub(super) async fn append_alone(
    connection: &mut PgConnection,
    names: &SchemaNames,
    append: &Append,
    head: KnownHead,
) -> LoneOutcome {
    let occurred_at = commit_timestamp(Some(head.occurred_at));
    let Ok((first, last)) = next_range(head.last, append.len()) else {
        return LoneOutcome::NotApplied;
    };
    let mut sequence_numbers = Vec::with_capacity(append.len());
    let mut event_types = Vec::with_capacity(append.len());
    let mut payloads = Vec::with_capacity(append.len());
    for (offset, (event_type, payload)) in append.batch.rows().enumerate() {
        sequence_numbers.push(to_stored(first + offset as u64));
        event_types.push(event_type);
        payloads.push(payload);
    }
    let sql = format!(
        "WITH locked AS (SELECT pg_advisory_xact_lock($7)), \
              head AS (SELECT COALESCE((SELECT sequence_number FROM {events} \
                                        ORDER BY sequence_number DESC LIMIT 1), 0) AS last \
                       FROM locked), \
              inserted AS ( \
                INSERT INTO {events} \
                    (sequence_number, batch_last_sequence_number, occurred_at, event_type, payload) \
                SELECT s, $2, $3, t, p::json \
                FROM UNNEST($1::bigint[], $4::text[], $5::text[]) AS u(s, t, p), head \
                WHERE head.last = $8 \
                RETURNING 1) \
         SELECT c.n FROM (SELECT count(*) AS n FROM inserted) AS c, \
                LATERAL (SELECT pg_notify($6, $9) WHERE c.n > 0) AS notified",
        events = names.events()
    );
    let inserted: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(&sequence_numbers)
        .bind(to_stored(last))
        .bind(occurred_at)
        .bind(&event_types)
        .bind(&payloads)
        .bind(names.channel())
        .bind(names.append_lock_key())
        .bind(to_stored(head.last))
        .bind(last.to_string())
        .fetch_optional(&mut *connection)
        .await;
    match inserted {
        Ok(Some(_)) => LoneOutcome::Committed {
            occurred_at,
            first,
            last,
        },
        Ok(None) => LoneOutcome::NotApplied,
        // The server answered with an error: the statement, and with it its
        // transaction, did not take effect.
        Err(sqlx::Error::Database(_)) => LoneOutcome::NotApplied,
        // Nothing was sent.
        Err(sqlx::Error::Encode(_)) => LoneOutcome::NotApplied,
        Err(error) => LoneOutcome::Unknown(database_failure(
            "appending failed while its statement was under way (the connection to \
             PostgreSQL was lost); it may or may not have taken effect",
            &error,
        )),
    }
}

/// Inserts the accepted batches in one statement that also notifies
/// listeners (delivered when the transaction commits).
async fn insert(
    names: &SchemaNames,
    connection: &mut PgConnection,
    group: &[Append],
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
        for (offset, (event_type, payload)) in request.batch.rows().enumerate() {
            sequence_numbers.push(to_stored(first + offset as u64));
            batch_lasts.push(to_stored(last));
            event_types.push(event_type);
            payloads.push(payload);
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
        events = names.events()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&sequence_numbers)
        .bind(&batch_lasts)
        .bind(occurred_at)
        .bind(&event_types)
        .bind(&payloads)
        .bind(names.channel())
        .bind(last.to_string())
        .execute(&mut *connection)
        .await?;
    Ok(())
}
