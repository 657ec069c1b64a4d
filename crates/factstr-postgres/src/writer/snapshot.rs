//! What an append transaction reads right after taking the append lock, in
//! one statement: the last stored event, and the newest candidates of each
//! conditional append's context.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use factstr::EventQuery;
use factstr::backend::Condition;
use factstr::backend::sequence::to_stored;
use sqlx::{PgConnection, Row};

use crate::read::{newest_match, newest_match_among};
use crate::rows::stored_number;
use crate::schema::SchemaNames;
use crate::where_clause::Candidates;

/// What an append transaction reads right after taking the lock, in one
/// statement: the last stored event, and the newest candidates of each
/// conditional request's context.
pub(super) struct LockedSnapshot {
    /// The last stored event's sequence number and commit time.
    pub(super) head: Option<(u64, DateTime<Utc>)>,
    /// One entry per request of the group, in order.
    pub(super) contexts: Vec<StoredCandidates>,
}

/// The newest stored candidates of one request's context.
pub(super) enum StoredCandidates {
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

/// Reads the last stored event and the newest candidates of each
/// condition's context (one condition per request, `None` for a plain
/// append), in one statement.
pub(super) async fn read_head_and_contexts(
    connection: &mut PgConnection,
    names: &SchemaNames,
    conditions: impl Iterator<Item = Option<&Condition>>,
) -> Result<LockedSnapshot, sqlx::Error> {
    let mut contexts: Vec<StoredCandidates> = conditions
        .map(|condition| {
            condition
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
        events = names.events()
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
            events = names.events(),
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
    pub(super) async fn newest_match(
        &self,
        connection: &mut PgConnection,
        names: &SchemaNames,
        query: &EventQuery,
    ) -> Result<Option<u64>, sqlx::Error> {
        let Self::Read { candidates, rows } = self else {
            return Ok(None);
        };
        if let Some(version) = newest_match_among(query, rows)? {
            return Ok(Some(version));
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
