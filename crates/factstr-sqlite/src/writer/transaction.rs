//! One group's write transaction: every request decided and written in
//! order, the payload index documents of the group, the commit, then the
//! committed batches published and the callers answered.
//!
//! The transaction ([`WriteTransaction`]) begins with the pending durable
//! cursors. Each request runs inside a savepoint
//! ([`RequestSavepoint`](super::guard::RequestSavepoint)) when other work
//! shares the transaction, so that a conflict or a failing request undoes
//! only its own writes; a group of one append without cursors needs none.
//! A conditional append is checked against the stored log and the appends
//! accepted before it in the group (whose events are written but not yet in
//! the payload index). When the group leaves enough events after the
//! payload index (see [`crate::index`]), their documents are written after
//! the last savepoint, as one FTS5 segment, with the new mark. Any other
//! failure (beginning, reading the head, the index,
//! `COMMIT`, SQLite rolling the whole transaction back) fails every request
//! of the group and publishes nothing: the guard rolls back and puts the
//! cursors back.

use std::collections::HashMap;
use std::vec;

use chrono::{DateTime, Utc};
use factstr::backend::sequence::{next_range, to_stored};
use factstr::backend::{Condition, StreamDispatcher, commit_timestamp, committed_batch};
use factstr::{AppendResult, EventStoreError, NewEvent};
use rusqlite::Connection;

use super::cursors::PendingCursorWrites;
use super::guard::WriteTransaction;
use super::request::{Answer, Reply, WriteRequest};
use crate::error::SqliteResultExt;
use crate::index::{self, IndexDocuments};
use crate::rows::{self, PreparedBatch};
use crate::{durable, read};

/// One group's transaction on the writer connection.
pub(super) struct GroupCommit<'a> {
    connection: &'a Connection,
    dispatcher: &'a StreamDispatcher,
    pending_cursors: &'a PendingCursorWrites,
}

impl<'a> GroupCommit<'a> {
    /// A group on the writer `connection`, publishing to `dispatcher` and
    /// writing `pending_cursors` along.
    pub(super) fn new(
        connection: &'a Connection,
        dispatcher: &'a StreamDispatcher,
        pending_cursors: &'a PendingCursorWrites,
    ) -> Self {
        Self {
            connection,
            dispatcher,
            pending_cursors,
        }
    }

    /// Commits `requests` as one group and answers each of them.
    pub(super) fn run(&self, requests: Vec<WriteRequest>) {
        let cursors = self.pending_cursors.take();
        let writes = requests.iter().filter(|request| request.writes()).count();
        if writes == 0 && cursors.is_empty() {
            // Nothing to write: a flush finds no pending cursor.
            answer_flushes(requests);
            return;
        }
        let savepoints = writes > 1 || !cursors.is_empty();
        let mut requests = requests.into_iter();
        let mut handled = Vec::with_capacity(requests.len());
        match self.write(cursors, savepoints, &mut requests, &mut handled) {
            Ok(()) => self.answer(handled),
            Err(error) => {
                for request in handled {
                    request.failed(&error).send();
                }
                fail_unhandled(requests, &error);
            }
        }
    }

    /// Begins the transaction with `cursors`, handles `requests` in it,
    /// moving each to `handled`, and commits what is to be kept. An error
    /// fails the whole group; the transaction's guard undoes it.
    fn write(
        &self,
        cursors: HashMap<String, u64>,
        savepoints: bool,
        requests: &mut vec::IntoIter<WriteRequest>,
        handled: &mut Vec<Handled>,
    ) -> Result<(), EventStoreError> {
        let transaction = WriteTransaction::begin(self.connection, self.pending_cursors, cursors)?;
        let (last_sequence_number, last_commit_time) = read::last_committed(self.connection)?;
        let indexed_through = index::indexed_through(self.connection)?;
        let mut head = Head {
            last_sequence_number,
            last_commit_time,
        };
        let mut documents = IndexDocuments::new();
        for request in requests {
            match request {
                WriteRequest::Append {
                    mut batch,
                    condition,
                    reply,
                } => {
                    let (batch_documents, has_terms) = batch.take_index_documents();
                    let earlier: &[Handled] = handled;
                    let outcome = self.in_savepoint(&transaction, savepoints, || {
                        self.write_append(&mut head, batch, condition.as_ref(), earlier)
                    });
                    let indexed = match &outcome {
                        Ok(appended) => self.add_documents(
                            &mut documents,
                            appended,
                            &batch_documents,
                            has_terms,
                        ),
                        Err(_) => Ok(()),
                    };
                    handled.push(Handled::Append { reply, outcome });
                    indexed?;
                }
                WriteRequest::OpenDurableStream {
                    name,
                    query_json,
                    reply,
                } => {
                    let outcome = self.in_savepoint(&transaction, savepoints, || {
                        self.write_durable_stream(&name, &query_json)
                    });
                    handled.push(Handled::OpenDurableStream { reply, outcome });
                }
                WriteRequest::FlushCursors { reply } => {
                    handled.push(Handled::FlushCursors { reply });
                }
                WriteRequest::CursorsPending => {}
            }
            if transaction.was_rolled_back() {
                // Nothing of the group is kept, and every request gets the
                // error that caused it.
                return Err(match handled.last().and_then(Handled::failure) {
                    Some(EventStoreError::BackendFailure { message }) => EventStoreError::backend(
                        format!("SQLite rolled back the write transaction: {message}"),
                    ),
                    _ => EventStoreError::backend(
                        "SQLite rolled back the write transaction after an error",
                    ),
                });
            }
        }
        if !transaction.writes_cursors() && !handled.iter().any(Handled::wrote) {
            // Only conflicts and failures (whose writes are undone with the
            // transaction): nothing to commit, nothing to sync.
            transaction.roll_back();
            return Ok(());
        }
        if head.last_sequence_number.saturating_sub(indexed_through)
            >= index::UNINDEXED_EVENTS_LIMIT
        {
            self.index_through(indexed_through, head.last_sequence_number, documents)?;
        }
        transaction.commit("committing appended events")
    }

    /// Writes the payload index documents of the events in
    /// `indexed_through < s <= last`, one segment: those `collected` in this
    /// group as they are, the earlier ones computed from their stored
    /// payloads; then moves the mark.
    fn index_through(
        &self,
        indexed_through: u64,
        last: u64,
        collected: IndexDocuments,
    ) -> Result<(), EventStoreError> {
        let collected_from = collected.first_sequence_number().unwrap_or(last + 1);
        let mut documents = IndexDocuments::new();
        index::add_stored_documents(
            self.connection,
            indexed_through,
            collected_from - 1,
            &mut documents,
        )?;
        documents.append(collected);
        documents
            .write(self.connection)
            .and_then(|()| index::set_indexed_through(self.connection, last))
            .or_failed_on(self.connection, "writing the payload index")
    }

    /// Runs one request, inside a savepoint when `savepoints`, so that its
    /// failure undoes only its own writes.
    fn in_savepoint<T>(
        &self,
        transaction: &WriteTransaction<'_>,
        savepoints: bool,
        write: impl FnOnce() -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        if !savepoints {
            return write();
        }
        let savepoint = transaction.savepoint()?;
        let outcome = write();
        if outcome.is_ok() {
            savepoint.keep();
        }
        outcome
    }

    /// Checks the condition, if any, and writes the batch's events (its
    /// payload index documents are written at the end of the group).
    /// `earlier` are the requests of the group handled before: their events
    /// are written, but not yet in the payload index.
    fn write_append(
        &self,
        head: &mut Head,
        batch: PreparedBatch,
        condition: Option<&Condition>,
        earlier: &[Handled],
    ) -> Result<Appended, EventStoreError> {
        if let Some(condition) = condition {
            let stored = read::context_version(self.connection, &condition.query)?;
            let accepted_earlier = earlier
                .iter()
                .filter_map(Handled::appended)
                .map(|appended| (appended.first, appended.events.as_slice()));
            condition.check(condition.context_version(stored, accepted_earlier))?;
        }
        let (first, last) = next_range(head.last_sequence_number, batch.len())?;
        let occurred_at = commit_timestamp(head.last_commit_time);
        self.insert_events(first, last, occurred_at.timestamp_micros(), &batch)
            .or_failed_on(self.connection, "writing events")?;
        head.last_sequence_number = last;
        head.last_commit_time = Some(occurred_at);
        Ok(Appended {
            first,
            occurred_at,
            events: batch.into_events(),
        })
    }

    /// Writes the batch's event rows.
    fn insert_events(
        &self,
        first: u64,
        last: u64,
        occurred_at_micros: i64,
        batch: &PreparedBatch,
    ) -> rusqlite::Result<()> {
        let batch_last = to_stored(last);
        let rows = batch.rows().zip(to_stored(first)..).map(
            |((event_type, payload_json), sequence_number)| {
                (
                    sequence_number,
                    batch_last,
                    occurred_at_micros,
                    event_type,
                    payload_json,
                )
            },
        );
        rows::insert_events(self.connection, batch.len(), rows)
    }

    /// Adds the payload index documents of `appended` to those of the
    /// group. The appends of a group take consecutive sequence numbers; a
    /// gap (which the group's bookkeeping rules out) drops what is
    /// collected, to be computed again from the stored payloads.
    fn add_documents(
        &self,
        documents: &mut IndexDocuments,
        appended: &Appended,
        batch_documents: &str,
        has_terms: bool,
    ) -> Result<(), EventStoreError> {
        if documents
            .next_sequence_number()
            .is_some_and(|next| next != appended.first)
        {
            *documents = IndexDocuments::new();
        }
        documents.extend(
            appended.first,
            appended.events.len() as u64,
            batch_documents,
            has_terms,
        );
        Ok(())
    }

    /// Creates the durable stream `name` unless it exists; returns its
    /// stored query and cursor.
    fn write_durable_stream(
        &self,
        name: &str,
        query_json: &str,
    ) -> Result<(String, u64), EventStoreError> {
        let (query, cursor) = durable::create(self.connection, name, query_json)
            .or_failed_on(self.connection, "opening a durable stream")?;
        Ok((query, rows::cursor(cursor)?))
    }

    /// Publishes the committed batches in order, then answers the callers.
    fn answer(&self, handled: Vec<Handled>) {
        let answers: Vec<Answer> = handled
            .into_iter()
            .map(|request| match request {
                Handled::Append { reply, outcome } => {
                    let outcome = outcome.map(|appended| {
                        let (result, records) =
                            committed_batch(appended.events, appended.first, appended.occurred_at);
                        self.dispatcher.publish(records);
                        result
                    });
                    Answer::Append(reply, outcome)
                }
                Handled::OpenDurableStream { reply, outcome } => {
                    Answer::OpenDurableStream(reply, outcome)
                }
                Handled::FlushCursors { reply } => Answer::FlushCursors(reply, Ok(())),
            })
            .collect();
        for answer in answers {
            answer.send();
        }
    }
}

/// The last committed sequence number and commit time, tracked through a
/// group.
struct Head {
    last_sequence_number: u64,
    last_commit_time: Option<DateTime<Utc>>,
}

/// An append written in the group's transaction, waiting for `COMMIT`.
struct Appended {
    first: u64,
    occurred_at: DateTime<Utc>,
    events: Vec<NewEvent>,
}

/// A request handled inside the group's transaction, waiting for `COMMIT`.
enum Handled {
    Append {
        reply: Reply<AppendResult>,
        outcome: Result<Appended, EventStoreError>,
    },
    OpenDurableStream {
        reply: Reply<(String, u64)>,
        outcome: Result<(String, u64), EventStoreError>,
    },
    FlushCursors {
        reply: Reply<()>,
    },
}

impl Handled {
    /// The append written, if the request is one that succeeded.
    fn appended(&self) -> Option<&Appended> {
        match self {
            Handled::Append {
                outcome: Ok(appended),
                ..
            } => Some(appended),
            _ => None,
        }
    }

    /// The error the request failed with, if it failed.
    fn failure(&self) -> Option<&EventStoreError> {
        match self {
            Handled::Append { outcome, .. } => outcome.as_ref().err(),
            Handled::OpenDurableStream { outcome, .. } => outcome.as_ref().err(),
            Handled::FlushCursors { .. } => None,
        }
    }

    /// Whether the request succeeded and wrote something to keep.
    fn wrote(&self) -> bool {
        match self {
            Handled::Append { outcome, .. } => outcome.is_ok(),
            Handled::OpenDurableStream { outcome, .. } => outcome.is_ok(),
            Handled::FlushCursors { .. } => false,
        }
    }

    /// The answer for a group whose transaction failed with `error`.
    fn failed(self, error: &EventStoreError) -> Answer {
        match self {
            Handled::Append { reply, .. } => Answer::Append(reply, Err(error.clone())),
            Handled::OpenDurableStream { reply, .. } => {
                Answer::OpenDurableStream(reply, Err(error.clone()))
            }
            Handled::FlushCursors { reply } => Answer::FlushCursors(reply, Err(error.clone())),
        }
    }
}

/// Answers the flushes of a group with nothing to write.
fn answer_flushes(requests: Vec<WriteRequest>) {
    for request in requests {
        if let WriteRequest::FlushCursors { reply } = request {
            Answer::FlushCursors(reply, Ok(())).send();
        }
    }
}

/// Answers every request the group did not get to with `error`.
fn fail_unhandled(requests: impl IntoIterator<Item = WriteRequest>, error: &EventStoreError) {
    for request in requests {
        request.fail(error);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;
    use std::sync::mpsc::{self, Receiver};

    use factstr::{EventFilter, EventQuery};
    use serde_json::{Value, json};

    use super::*;
    use crate::{SqliteStoreOptions, schema};

    /// A writer connection on a new database, and what a group commit
    /// needs besides.
    struct Fixture {
        _folder: tempfile::TempDir,
        path: PathBuf,
        connection: Connection,
        dispatcher: StreamDispatcher,
        pending_cursors: PendingCursorWrites,
    }

    impl Fixture {
        fn new() -> Self {
            let folder = tempfile::tempdir().unwrap();
            let path = folder.path().join("events.db");
            let connection =
                schema::open_writer_connection(&path, &SqliteStoreOptions::default()).unwrap();
            Self {
                _folder: folder,
                path,
                connection,
                dispatcher: StreamDispatcher::new(0),
                pending_cursors: PendingCursorWrites::default(),
            }
        }

        fn run(&self, requests: Vec<WriteRequest>) {
            GroupCommit::new(&self.connection, &self.dispatcher, &self.pending_cursors)
                .run(requests);
        }

        /// The sequence numbers of every event, as another connection sees
        /// them.
        fn committed(&self) -> Vec<u64> {
            let reader =
                schema::open_reader_connection(&self.path, &SqliteStoreOptions::default()).unwrap();
            read::query(&reader, &EventQuery::all())
                .unwrap()
                .event_records
                .iter()
                .map(|record| record.sequence_number)
                .collect()
        }
    }

    type Answered<T> = Receiver<Result<T, EventStoreError>>;

    fn append_request(
        event_type: &str,
        payloads: &[Value],
        condition: Option<(&EventQuery, Option<u64>)>,
    ) -> (WriteRequest, Answered<AppendResult>) {
        let events = payloads
            .iter()
            .map(|payload| NewEvent::new(event_type, payload.clone()))
            .collect();
        append_of(events, condition)
    }

    fn append_of(
        events: Vec<NewEvent>,
        condition: Option<(&EventQuery, Option<u64>)>,
    ) -> (WriteRequest, Answered<AppendResult>) {
        let (reply, answer) = mpsc::sync_channel(1);
        let request = WriteRequest::Append {
            batch: PreparedBatch::new(events).unwrap(),
            condition: condition.map(|(query, expected)| Condition::new(query, expected)),
            reply: reply.into(),
        };
        (request, answer)
    }

    fn first_sequence_numbers(
        answers: Vec<Answered<AppendResult>>,
    ) -> Vec<Result<u64, EventStoreError>> {
        answers
            .into_iter()
            .map(|answer| {
                answer
                    .recv()
                    .unwrap()
                    .map(|result| result.first_sequence_number)
            })
            .collect()
    }

    #[test]
    fn conditions_in_a_group_see_the_earlier_appends_before_they_are_indexed() {
        let fixture = Fixture::new();
        // Only the payload index can narrow this context.
        let context = EventQuery::all()
            .with_filters([EventFilter::default().with_payload_predicates([json!({"k": "x"})])]);
        let x = json!({"k": "x"});
        let (requests, answers): (Vec<_>, Vec<_>) = [
            append_request("noted", &[x.clone(), json!({"k": "y"})], None),
            append_request("noted", std::slice::from_ref(&x), Some((&context, None))),
            append_request("noted", std::slice::from_ref(&x), Some((&context, Some(1)))),
            append_request("noted", &[json!({})], None),
            append_request("noted", std::slice::from_ref(&x), Some((&context, Some(3)))),
            append_request("noted", &[x], Some((&context, Some(5)))),
        ]
        .into_iter()
        .unzip();
        fixture.run(requests);
        let outcomes = first_sequence_numbers(answers);
        assert!(matches!(outcomes[0], Ok(1)));
        assert!(matches!(
            outcomes[1],
            Err(EventStoreError::ConditionalAppendConflict {
                expected: None,
                actual: Some(1)
            })
        ));
        assert!(matches!(outcomes[2], Ok(3)));
        assert!(matches!(outcomes[3], Ok(4)));
        assert!(matches!(outcomes[4], Ok(5)));
        assert!(matches!(outcomes[5], Ok(6)));

        // After the commit, the index holds the documents of the whole group.
        let reader =
            schema::open_reader_connection(&fixture.path, &SqliteStoreOptions::default()).unwrap();
        let result = read::query(&reader, &context).unwrap();
        let found: Vec<u64> = result
            .event_records
            .iter()
            .map(|record| record.sequence_number)
            .collect();
        assert_eq!(found, vec![1, 3, 5, 6]);
        assert_eq!(result.current_context_version, Some(6));
        let other = EventQuery::all()
            .with_filters([EventFilter::default().with_payload_predicates([json!({"k": "y"})])]);
        assert_eq!(
            read::query(&reader, &other)
                .unwrap()
                .current_context_version,
            Some(2)
        );
    }

    #[test]
    fn an_append_whose_rows_are_refused_fails_alone_and_leaves_no_row() {
        let fixture = Fixture::new();
        fixture
            .connection
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON factstr_events \
                 WHEN NEW.event_type = 'refused' \
                 BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;",
            )
            .unwrap();
        // In a group, inside savepoints: the refused append's first event
        // is written, its second refused, and neither is kept.
        let (requests, answers): (Vec<_>, Vec<_>) = [
            append_request("noted", &[json!(1)], None),
            append_of(
                vec![
                    NewEvent::new("noted", json!(2)),
                    NewEvent::new("refused", json!(2)),
                ],
                None,
            ),
            append_request("noted", &[json!(3)], None),
        ]
        .into_iter()
        .unzip();
        fixture.run(requests);
        let outcomes = first_sequence_numbers(answers);
        assert!(matches!(outcomes[0], Ok(1)));
        assert!(
            matches!(&outcomes[1], Err(EventStoreError::BackendFailure { message })
                if message.contains("refused by a trigger")),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(outcomes[2], Ok(2)));
        assert_eq!(fixture.committed(), vec![1, 2]);
        assert_eq!(fixture.dispatcher.last_published(), 2);

        // Alone, without a savepoint: the transaction keeps nothing.
        let (request, answer) = append_request("refused", &[json!(4)], None);
        fixture.run(vec![request]);
        assert!(matches!(
            answer.recv().unwrap(),
            Err(EventStoreError::BackendFailure { .. })
        ));
        assert!(fixture.connection.is_autocommit());
        assert_eq!(fixture.committed(), vec![1, 2]);
        let (request, answer) = append_request("noted", &[json!(5)], None);
        fixture.run(vec![request]);
        assert_eq!(answer.recv().unwrap().unwrap().first_sequence_number, 3);
    }

    #[test]
    fn a_failing_commit_fails_every_request_publishes_nothing_and_keeps_the_cursors() {
        let fixture = Fixture::new();
        // A deferred foreign key is checked at COMMIT only: an event of
        // type `doomed` makes COMMIT fail.
        fixture
            .connection
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (parent_id INTEGER
                     REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                 CREATE TRIGGER doom AFTER INSERT ON factstr_events
                 WHEN NEW.event_type = 'doomed'
                 BEGIN INSERT INTO child VALUES (42); END;",
            )
            .unwrap();
        fixture.pending_cursors.record("projection", 7);
        let (flush, flushed) = mpsc::sync_channel(1);
        let (first, first_answer) = append_request("noted", &[json!(1)], None);
        let (doomed, doomed_answer) = append_request("doomed", &[json!(2)], None);
        fixture.run(vec![
            first,
            doomed,
            WriteRequest::FlushCursors {
                reply: flush.into(),
            },
        ]);

        for outcome in [
            first_answer.recv().unwrap().map(drop),
            doomed_answer.recv().unwrap().map(drop),
            flushed.recv().unwrap(),
        ] {
            assert!(
                matches!(&outcome, Err(EventStoreError::BackendFailure { message })
                    if message.contains("committing appended events")),
                "{outcome:?}"
            );
        }
        assert!(fixture.connection.is_autocommit());
        assert_eq!(fixture.dispatcher.last_published(), 0);
        assert!(fixture.committed().is_empty());
        assert_eq!(fixture.pending_cursors.get("projection"), Some(7));

        // Nothing was consumed: the next group starts at 1 and takes the
        // cursor along.
        fixture
            .connection
            .execute_batch("DROP TRIGGER doom")
            .unwrap();
        let (request, answer) = append_request("noted", &[json!(3)], None);
        fixture.run(vec![request]);
        assert_eq!(answer.recv().unwrap().unwrap().first_sequence_number, 1);
        assert_eq!(fixture.pending_cursors.get("projection"), None);
        assert_eq!(fixture.dispatcher.last_published(), 1);
    }
}
