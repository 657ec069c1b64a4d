//! The SQL the store runs on its tables, in one place (the schema itself is
//! in [`schema`](crate::schema), the 0.5.x tables in
//! [`legacy`](crate::legacy)).
//!
//! Every read names the index it relies on or reads by rowid, so that a
//! candidate read never scans a table (the tests below check the plans).

use std::sync::LazyLock;

/// Starts the writer's group transaction, taking the write lock at once.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// Starts a reader's snapshot.
pub(crate) const BEGIN_READ: &str = "BEGIN";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";
/// One request of a group runs inside this savepoint when other work
/// shares the transaction.
pub(crate) const SAVEPOINT: &str = "SAVEPOINT factstr_request";
pub(crate) const RELEASE_SAVEPOINT: &str = "RELEASE factstr_request";
pub(crate) const ROLLBACK_TO_SAVEPOINT: &str =
    "ROLLBACK TO factstr_request; RELEASE factstr_request";

// The event reads select the columns `rows::decode_event` decodes, in its
// order.
pub(crate) const SELECT_EVENT: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events WHERE sequence_number = ?1";
pub(crate) const SCAN_ASCENDING: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events \
     WHERE sequence_number > ?1 AND sequence_number <= ?2 ORDER BY sequence_number LIMIT ?3";
pub(crate) const SCAN_DESCENDING: &str = "SELECT sequence_number, batch_last_sequence_number, \
     occurred_at_micros, event_type, payload FROM factstr_events \
     WHERE sequence_number <= ?1 ORDER BY sequence_number DESC";
pub(crate) const NEWEST_AT_OR_BELOW: &str = "SELECT sequence_number FROM factstr_events \
     WHERE sequence_number <= ?1 ORDER BY sequence_number DESC LIMIT 1";
pub(crate) const LAST_COMMITTED: &str = "SELECT sequence_number, occurred_at_micros \
     FROM factstr_events ORDER BY sequence_number DESC LIMIT 1";

const TYPE_ASCENDING: &str = "SELECT sequence_number FROM factstr_events INDEXED BY factstr_events_by_type \
     WHERE event_type = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number LIMIT ?4";
const TYPE_DESCENDING: &str = "SELECT sequence_number FROM factstr_events INDEXED BY factstr_events_by_type \
     WHERE event_type = ?1 AND sequence_number > ?2 AND sequence_number <= ?3 \
     ORDER BY sequence_number DESC LIMIT ?4";
const TOKENS_ASCENDING: &str = "SELECT rowid FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 AND rowid > ?2 AND rowid <= ?3 \
     ORDER BY rowid LIMIT ?4";
const TOKENS_DESCENDING: &str = "SELECT rowid FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 AND rowid > ?2 AND rowid <= ?3 \
     ORDER BY rowid DESC LIMIT ?4";

/// How many events hold the token `?1`, counted up to `?2`.
pub(crate) const TOKEN_COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_payload_index \
     WHERE factstr_payload_index MATCH ?1 LIMIT ?2)";
/// How many events have the type `?1`, counted up to `?2`.
pub(crate) const TYPE_COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM factstr_events \
     INDEXED BY factstr_events_by_type WHERE event_type = ?1 LIMIT ?2)";

/// Inserts the payload index documents of a batch whose first sequence
/// number is `?1`, from the JSON array `?2`; an empty document (a payload
/// without terms) gets no row.
pub(crate) const INSERT_INDEX_DOCUMENTS: &str = "INSERT INTO factstr_payload_index (rowid, terms) \
     SELECT ?1 + key, value FROM json_each(?2) WHERE value <> ''";

/// The sequence number through which the payload index is written (see
/// [`index`](crate::index)), and the last committed one (`NULL` when the
/// log is empty).
pub(crate) const SELECT_INDEXED_THROUGH: &str = "SELECT CAST(value AS INTEGER), \
     (SELECT MAX(sequence_number) FROM factstr_events) \
     FROM factstr_metadata WHERE key = 'payload_indexed_through'";
/// Records that the payload index is written through `?1`.
pub(crate) const SET_INDEXED_THROUGH: &str =
    "UPDATE factstr_metadata SET value = ?1 WHERE key = 'payload_indexed_through'";
/// The payloads of the events in `?1 < s <= ?2`, to be indexed.
pub(crate) const SELECT_PAYLOADS: &str = "SELECT sequence_number, payload FROM factstr_events \
     WHERE sequence_number > ?1 AND sequence_number <= ?2 ORDER BY sequence_number";

pub(crate) const SELECT_DURABLE_STREAM: &str =
    "SELECT query, cursor FROM factstr_durable_streams WHERE name = ?1";
pub(crate) const INSERT_DURABLE_STREAM: &str = "INSERT INTO factstr_durable_streams (name, query, cursor) VALUES (?1, ?2, 0) \
     ON CONFLICT (name) DO NOTHING";
/// Cursors only move forward, also when two writes race.
pub(crate) const ADVANCE_CURSOR: &str =
    "UPDATE factstr_durable_streams SET cursor = MAX(cursor, ?2) WHERE name = ?1";

/// The order of a candidate read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Ascending,
    Descending,
}

/// The sequence numbers of events of type `?1` in `?2 < s <= ?3`, at most
/// `?4` of them.
pub(crate) fn type_candidates(direction: Direction) -> &'static str {
    match direction {
        Direction::Ascending => TYPE_ASCENDING,
        Direction::Descending => TYPE_DESCENDING,
    }
}

/// The sequence numbers of events whose payload index document matches
/// `?1`, in `?2 < s <= ?3`, at most `?4` of them.
pub(crate) fn token_candidates(direction: Direction) -> &'static str {
    match direction {
        Direction::Ascending => TOKENS_ASCENDING,
        Direction::Descending => TOKENS_DESCENDING,
    }
}

/// Like [`token_candidates`], restricted to `types` event types bound from
/// `?5` on (the payload index walked first, each candidate's event row
/// looked up).
pub(crate) fn token_candidates_of_types(direction: Direction, types: usize) -> String {
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

/// The sequence numbers of the events in `?1 < s <= ?2` (not in the
/// payload index yet), at most `?3` of them, of the `types` event types
/// bound from `?4` on when there are any.
pub(crate) fn unindexed_candidates(direction: Direction, types: usize) -> String {
    let mut sql = String::from(
        "SELECT sequence_number FROM factstr_events \
         WHERE sequence_number > ?1 AND sequence_number <= ?2",
    );
    if types > 0 {
        sql.push_str(" AND event_type IN (");
        for index in 0..types {
            if index > 0 {
                sql.push(',');
            }
            sql.push('?');
            sql.push_str(&(index + 4).to_string());
        }
        sql.push(')');
    }
    sql.push_str(match direction {
        Direction::Ascending => " ORDER BY sequence_number LIMIT ?3",
        Direction::Descending => " ORDER BY sequence_number DESC LIMIT ?3",
    });
    sql
}

/// Rows per multi-row event `INSERT`; a batch is written with the largest
/// sizes first.
const INSERT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The multi-row event `INSERT`s, one per chunk size, largest first. Each
/// row binds `sequence_number, batch_last_sequence_number,
/// occurred_at_micros, event_type, payload`.
static INSERT_EVENTS: LazyLock<Vec<(usize, String)>> = LazyLock::new(|| {
    INSERT_CHUNKS
        .iter()
        .map(|&rows| {
            let values = vec!["(?,?,?,?,?)"; rows].join(",");
            let sql = format!(
                "INSERT INTO factstr_events (sequence_number, batch_last_sequence_number, \
                 occurred_at_micros, event_type, payload) VALUES {values}"
            );
            (rows, sql)
        })
        .collect()
});

/// The largest multi-row event `INSERT` for at most `left` rows (`left` is
/// at least 1), and how many rows it takes.
pub(crate) fn insert_events(left: usize) -> (usize, &'static str) {
    INSERT_EVENTS
        .iter()
        .find(|(rows, _)| *rows <= left)
        .map_or((1, ""), |(rows, sql)| (*rows, sql.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use factstr::NewEvent;
    use rusqlite::Connection;
    use serde_json::json;

    use super::*;
    use crate::testing::reader_on;

    fn reader() -> (tempfile::TempDir, Connection) {
        reader_on(vec![NewEvent::new("a", json!({"k": 1}))])
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
        let (_folder, connection) = reader();
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
        let (_folder, connection) = reader();
        let mut statements = vec![TOKENS_ASCENDING.to_owned(), TOKENS_DESCENDING.to_owned()];
        for direction in [Direction::Ascending, Direction::Descending] {
            for types in [1, 3] {
                statements.push(token_candidates_of_types(direction, types));
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
}
