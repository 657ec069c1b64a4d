//! The single writer: one connection on a dedicated thread that commits
//! every request waiting at that moment in one `BEGIN IMMEDIATE`
//! transaction (group commit: one sync for the whole group).
//!
//! Each conditional append is checked in order against the database as the
//! earlier requests of its group left it; a conflict or a failing request
//! fails alone (requests of a group run inside savepoints), and never aborts
//! the others. After `COMMIT` succeeded, and before the next transaction
//! starts, every committed batch is published to the stream dispatcher in
//! commit order; then the callers are answered. If `COMMIT` fails, every
//! request of the group fails with `BackendFailure` and nothing is published.
//!
//! Durable cursor updates do not wait for a commit of their own: they are
//! folded into the next transaction (or written after a short delay when no
//! append comes), so replay is not bounded by the disk's sync rate.

use std::collections::HashMap;
use std::mem;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::backend::{StreamDispatcher, commit_timestamp};
use factstr::{AppendResult, EventQuery, EventRecord, EventStoreError, NewEvent};
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::error::{SqliteResultExt, writer_stopped};
use crate::sql;

/// How often the idle writer checks whether another process committed, so
/// that live streams see those batches promptly.
const FOREIGN_COMMIT_POLL: Duration = Duration::from_millis(100);

/// How long cursor updates wait for an append to ride along with before
/// they are committed on their own.
const CURSOR_FLUSH_DELAY: Duration = Duration::from_millis(10);

/// Most requests and events committed in one group.
const MAX_GROUP_REQUESTS: usize = 1_024;
const MAX_GROUP_EVENTS: usize = 65_536;

/// SQLite's default limit on the length of a text value.
const MAX_TEXT_BYTES: usize = 1_000_000_000;

/// Rows per multi-row `INSERT`; a batch is written with the largest sizes
/// first.
const INSERT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// An event ready to be written: its JSON text and index terms computed by
/// the calling thread, outside the writer.
pub(crate) struct PreparedEvent {
    event_type: String,
    payload: Value,
    payload_json: String,
    terms: Vec<String>,
}

/// A validated batch ready to be written.
pub(crate) struct PreparedBatch {
    events: Vec<PreparedEvent>,
}

impl PreparedBatch {
    /// Serialises `new_events` (already checked by
    /// `factstr::backend::validation`) and computes their index terms;
    /// refuses what SQLite cannot store.
    pub(crate) fn new(new_events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut events = Vec::with_capacity(new_events.len());
        for (index, event) in new_events.into_iter().enumerate() {
            let payload_json = serde_json::to_string(&event.payload).map_err(|error| {
                EventStoreError::invalid_input(format!(
                    "the payload of event {index} of the batch cannot be written as JSON: {error}"
                ))
            })?;
            if payload_json.len() > MAX_TEXT_BYTES || event.event_type.len() > MAX_TEXT_BYTES {
                return Err(EventStoreError::invalid_input(format!(
                    "event {index} of the batch is larger than SQLite's limit of \
                     {MAX_TEXT_BYTES} bytes per value"
                )));
            }
            let terms = payload_terms(&event.payload);
            events.push(PreparedEvent {
                event_type: event.event_type,
                payload: event.payload,
                payload_json,
                terms,
            });
        }
        Ok(Self { events })
    }

    fn len(&self) -> usize {
        self.events.len()
    }
}

/// The condition of a conditional append.
pub(crate) struct Condition {
    pub(crate) context_query: EventQuery,
    pub(crate) expected_context_version: Option<u64>,
}

type Reply<T> = SyncSender<Result<T, EventStoreError>>;

enum WriteRequest {
    Append {
        batch: PreparedBatch,
        condition: Option<Condition>,
        reply: Reply<AppendResult>,
    },
    OpenDurableStream {
        name: String,
        query_json: String,
        reply: Reply<(String, u64)>,
    },
    /// Commit the pending cursor updates now and answer.
    FlushCursors { reply: Reply<()> },
    /// Cursor updates are pending.
    CursorsPending,
    /// Commit what is pending and stop.
    Shutdown,
}

/// Durable cursor updates not yet written, greatest value per stream.
#[derive(Default)]
struct PendingCursors {
    state: Mutex<PendingCursorState>,
}

#[derive(Default)]
struct PendingCursorState {
    cursors: HashMap<String, u64>,
    /// A `CursorsPending` request is on its way to the writer.
    announced: bool,
}

impl PendingCursors {
    fn lock(&self) -> MutexGuard<'_, PendingCursorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> HashMap<String, u64> {
        let mut state = self.lock();
        state.announced = false;
        mem::take(&mut state.cursors)
    }

    /// Puts back updates whose transaction failed, keeping greater values.
    fn restore(&self, cursors: HashMap<String, u64>) {
        let mut state = self.lock();
        for (name, cursor) in cursors {
            let pending = state.cursors.entry(name).or_insert(cursor);
            *pending = (*pending).max(cursor);
        }
    }
}

/// The handle callers use to reach the writer thread.
pub(crate) struct Writer {
    sender: Sender<WriteRequest>,
    pending_cursors: Arc<PendingCursors>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `connection`. `data_version` is the
    /// connection's `PRAGMA data_version` when the dispatcher's starting
    /// point was read.
    pub(crate) fn start(
        connection: Connection,
        data_version: i64,
        dispatcher: Arc<StreamDispatcher>,
    ) -> Result<Self, EventStoreError> {
        let (sender, receiver) = mpsc::channel();
        let pending_cursors = Arc::new(PendingCursors::default());
        let thread = WriterThread {
            connection,
            receiver,
            dispatcher,
            pending_cursors: Arc::clone(&pending_cursors),
            data_version,
            insert_sql: InsertSql::new(),
        };
        let handle = std::thread::Builder::new()
            .name("factstr-sqlite-writer".to_owned())
            .spawn(move || thread.run())
            .map_err(|error| {
                EventStoreError::backend(format!("cannot start the SQLite writer thread: {error}"))
            })?;
        Ok(Self {
            sender,
            pending_cursors,
            thread: Mutex::new(Some(handle)),
        })
    }

    /// Appends `batch`, if `condition` holds, and returns once it committed
    /// and was published.
    pub(crate) fn append(
        &self,
        batch: PreparedBatch,
        condition: Option<Condition>,
    ) -> Result<AppendResult, EventStoreError> {
        self.call(|reply| WriteRequest::Append {
            batch,
            condition,
            reply,
        })
    }

    /// Creates the durable stream `name` with `query_json` and cursor 0 if it
    /// does not exist, and returns its stored query and cursor (pending
    /// cursor updates included).
    pub(crate) fn open_durable_stream(
        &self,
        name: &str,
        query_json: String,
    ) -> Result<(String, u64), EventStoreError> {
        self.call(|reply| WriteRequest::OpenDurableStream {
            name: name.to_owned(),
            query_json,
            reply,
        })
    }

    /// Records a durable cursor; it is written with the next transaction.
    pub(crate) fn advance_durable_cursor(
        &self,
        name: &str,
        cursor: u64,
    ) -> Result<(), EventStoreError> {
        let announce = {
            let mut state = self.pending_cursors.lock();
            match state.cursors.get_mut(name) {
                Some(pending) => *pending = (*pending).max(cursor),
                None => {
                    state.cursors.insert(name.to_owned(), cursor);
                }
            }
            !mem::replace(&mut state.announced, true)
        };
        if announce {
            self.sender
                .send(WriteRequest::CursorsPending)
                .map_err(|_| writer_stopped())?;
        }
        Ok(())
    }

    /// The greatest pending (not yet written) cursor of `name`, if any.
    pub(crate) fn pending_cursor(&self, name: &str) -> Option<u64> {
        self.pending_cursors.lock().cursors.get(name).copied()
    }

    /// Writes every pending cursor update and returns once committed.
    pub(crate) fn flush_durable_cursors(&self) -> Result<(), EventStoreError> {
        self.call(|reply| WriteRequest::FlushCursors { reply })
    }

    /// Commits what is pending, stops the writer thread and waits for it.
    /// Later calls fail with `BackendFailure`.
    pub(crate) fn shutdown(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            return;
        };
        let _ = self.sender.send(WriteRequest::Shutdown);
        if handle.thread().id() == std::thread::current().id() {
            return;
        }
        if handle.join().is_err() {
            tracing::error!("the SQLite writer thread panicked");
        }
    }

    fn call<T>(
        &self,
        request: impl FnOnce(Reply<T>) -> WriteRequest,
    ) -> Result<T, EventStoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.sender
            .send(request(reply))
            .map_err(|_| writer_stopped())?;
        answer.recv().map_err(|_| writer_stopped())?
    }
}

/// What the writer thread owns.
struct WriterThread {
    connection: Connection,
    receiver: Receiver<WriteRequest>,
    dispatcher: Arc<StreamDispatcher>,
    pending_cursors: Arc<PendingCursors>,
    /// `PRAGMA data_version` when the writer last looked; it changes when
    /// another connection commits.
    data_version: i64,
    insert_sql: InsertSql,
}

/// The last committed sequence number and commit time, tracked through a
/// group.
struct Head {
    last_sequence_number: u64,
    last_commit_time: Option<DateTime<Utc>>,
}

/// A request handled inside the group's transaction, waiting for `COMMIT`.
enum Handled {
    Append {
        reply: Reply<AppendResult>,
        outcome: Result<(AppendResult, Vec<EventRecord>), EventStoreError>,
    },
    OpenDurableStream {
        reply: Reply<(String, u64)>,
        outcome: Result<(String, u64), EventStoreError>,
    },
    FlushCursors {
        reply: Reply<()>,
    },
}

impl WriterThread {
    fn run(mut self) {
        loop {
            let first = match self.receiver.recv_timeout(FOREIGN_COMMIT_POLL) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) => {
                    self.publish_foreign_commits();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit_group(Vec::new());
                    return;
                }
            };
            let group = self.gather_group(first);
            let shutdown = group
                .iter()
                .any(|request| matches!(request, WriteRequest::Shutdown));
            self.commit_group(group);
            if shutdown {
                return;
            }
        }
    }

    /// Takes every request waiting now (up to the group limits). Cursor
    /// updates alone wait briefly for an append to join.
    fn gather_group(&self, first: WriteRequest) -> Vec<WriteRequest> {
        let mut events = request_events(&first);
        let cursors_only = matches!(first, WriteRequest::CursorsPending);
        let mut group = vec![first];
        if cursors_only && let Ok(next) = self.receiver.recv_timeout(CURSOR_FLUSH_DELAY) {
            events += request_events(&next);
            group.push(next);
        }
        while group.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
            match self.receiver.try_recv() {
                Ok(next) => {
                    events += request_events(&next);
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        group
    }

    /// Commits one group and answers its requests.
    fn commit_group(&mut self, requests: Vec<WriteRequest>) {
        let cursors = self.pending_cursors.take();
        let writes = requests
            .iter()
            .filter(|request| {
                matches!(
                    request,
                    WriteRequest::Append { .. } | WriteRequest::OpenDurableStream { .. }
                )
            })
            .count();
        if writes == 0 && cursors.is_empty() {
            // Nothing to write: a flush finds no pending cursor.
            answer_flushes(requests);
            return;
        }

        if let Err(error) = self.begin_group(&cursors) {
            self.rollback();
            self.pending_cursors.restore(cursors);
            fail_all(requests, &error);
            return;
        }
        let mut head = match sql::last_committed(&self.connection) {
            Ok((last_sequence_number, last_commit_time)) => Head {
                last_sequence_number,
                last_commit_time,
            },
            Err(error) => {
                self.rollback();
                self.pending_cursors.restore(cursors);
                fail_all(requests, &error);
                return;
            }
        };

        let savepoints = writes > 1 || !cursors.is_empty();
        let mut handled = Vec::with_capacity(requests.len());
        for request in requests {
            match request {
                WriteRequest::Append {
                    batch,
                    condition,
                    reply,
                } => {
                    let outcome = self.in_savepoint(savepoints, |writer| {
                        writer.write_append(&mut head, batch, condition)
                    });
                    handled.push(Handled::Append { reply, outcome });
                }
                WriteRequest::OpenDurableStream {
                    name,
                    query_json,
                    reply,
                } => {
                    let outcome = self.in_savepoint(savepoints, |writer| {
                        writer.write_durable_stream(&name, &query_json)
                    });
                    handled.push(Handled::OpenDurableStream { reply, outcome });
                }
                WriteRequest::FlushCursors { reply } => {
                    handled.push(Handled::FlushCursors { reply });
                }
                WriteRequest::CursorsPending | WriteRequest::Shutdown => {}
            }
            if self.connection.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): nothing of the group is kept.
                let error = EventStoreError::backend(
                    "SQLite rolled back the write transaction after an error",
                );
                self.pending_cursors.restore(cursors);
                fail_all_handled(handled, &error);
                return;
            }
        }

        if cursors.is_empty() && !handled.iter().any(Handled::wrote) {
            // Only conflicts and failures (whose writes are undone with the
            // transaction): nothing to commit, nothing to sync.
            self.rollback();
            self.answer(handled);
            return;
        }
        let committed = self
            .connection
            .prepare_cached("COMMIT")
            .and_then(|mut statement| statement.execute([]))
            .or_failed("committing appended events");
        if let Err(error) = committed {
            self.rollback();
            self.pending_cursors.restore(cursors);
            fail_all_handled(handled, &error);
            return;
        }
        self.answer(handled);
    }

    /// `BEGIN IMMEDIATE` and the pending cursor updates.
    fn begin_group(&self, cursors: &HashMap<String, u64>) -> Result<(), EventStoreError> {
        self.connection
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut statement| statement.execute([]))
            .or_failed("starting a write transaction")?;
        if cursors.is_empty() {
            return Ok(());
        }
        let mut statement = self
            .connection
            .prepare_cached(
                "UPDATE factstr_durable_streams SET cursor = MAX(cursor, ?2) WHERE name = ?1",
            )
            .or_failed("writing durable cursors")?;
        for (name, cursor) in cursors {
            statement
                .execute(params![name, sql::to_sql_integer(*cursor)])
                .or_failed("writing durable cursors")?;
        }
        Ok(())
    }

    /// Runs one request, inside a savepoint when other work shares the
    /// transaction, so that its failure undoes only its own writes.
    fn in_savepoint<T>(
        &mut self,
        savepoint: bool,
        write: impl FnOnce(&mut Self) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        if !savepoint {
            return write(self);
        }
        self.connection
            .prepare_cached("SAVEPOINT factstr_request")
            .and_then(|mut statement| statement.execute([]))
            .or_failed("starting a savepoint")?;
        let outcome = write(self);
        let end = if outcome.is_ok() {
            "RELEASE factstr_request"
        } else {
            "ROLLBACK TO factstr_request; RELEASE factstr_request"
        };
        if !self.connection.is_autocommit()
            && let Err(error) = self.connection.execute_batch(end)
        {
            tracing::error!(%error, "ending a savepoint failed");
        }
        outcome
    }

    /// Checks the condition, if any, and writes the batch.
    fn write_append(
        &mut self,
        head: &mut Head,
        batch: PreparedBatch,
        condition: Option<Condition>,
    ) -> Result<(AppendResult, Vec<EventRecord>), EventStoreError> {
        if let Some(condition) = condition {
            let actual = sql::context_version(&self.connection, &condition.context_query)?;
            if actual != condition.expected_context_version {
                return Err(EventStoreError::ConditionalAppendConflict {
                    expected: condition.expected_context_version,
                    actual,
                });
            }
        }
        let count = batch.len() as u64;
        let first = head.last_sequence_number + 1;
        let last = head.last_sequence_number + count;
        if last > MAX_SEQUENCE_NUMBER {
            return Err(EventStoreError::backend(format!(
                "the log cannot take {count} more events: sequence numbers end at {MAX_SEQUENCE_NUMBER}"
            )));
        }
        let occurred_at = commit_timestamp(head.last_commit_time);
        self.insert_events(first, last, occurred_at.timestamp_micros(), &batch)
            .or_failed("writing events")?;
        self.insert_terms(first, &batch)
            .or_failed("writing the payload index")?;
        head.last_sequence_number = last;
        head.last_commit_time = Some(occurred_at);

        let records = batch
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
        let result = AppendResult {
            first_sequence_number: first,
            last_sequence_number: last,
            committed_count: count,
        };
        Ok((result, records))
    }

    fn insert_events(
        &self,
        first: u64,
        last: u64,
        occurred_at_micros: i64,
        batch: &PreparedBatch,
    ) -> rusqlite::Result<()> {
        let batch_last = sql::to_sql_integer(last);
        let mut events = batch.events.iter().zip(sql::to_sql_integer(first)..);
        let mut left = batch.len();
        while left > 0 {
            let (rows, statement_sql) = self.insert_sql.events_for(left);
            let mut statement = self.connection.prepare_cached(statement_sql)?;
            let mut index = 1;
            for (event, sequence_number) in events.by_ref().take(rows) {
                statement.raw_bind_parameter(index, sequence_number)?;
                statement.raw_bind_parameter(index + 1, batch_last)?;
                statement.raw_bind_parameter(index + 2, occurred_at_micros)?;
                statement.raw_bind_parameter(index + 3, event.event_type.as_str())?;
                statement.raw_bind_parameter(index + 4, event.payload_json.as_str())?;
                index += 5;
            }
            statement.raw_execute()?;
            left -= rows;
        }
        Ok(())
    }

    fn insert_terms(&self, first: u64, batch: &PreparedBatch) -> rusqlite::Result<()> {
        let mut postings = batch
            .events
            .iter()
            .zip(sql::to_sql_integer(first)..)
            .flat_map(|(event, sequence_number)| {
                event
                    .terms
                    .iter()
                    .map(move |term| (term.as_str(), event.event_type.as_str(), sequence_number))
            });
        let mut left: usize = batch.events.iter().map(|event| event.terms.len()).sum();
        while left > 0 {
            let (rows, statement_sql) = self.insert_sql.terms_for(left);
            let mut statement = self.connection.prepare_cached(statement_sql)?;
            let mut index = 1;
            for (term, event_type, sequence_number) in postings.by_ref().take(rows) {
                statement.raw_bind_parameter(index, term)?;
                statement.raw_bind_parameter(index + 1, event_type)?;
                statement.raw_bind_parameter(index + 2, sequence_number)?;
                index += 3;
            }
            statement.raw_execute()?;
            left -= rows;
        }
        Ok(())
    }

    fn write_durable_stream(
        &self,
        name: &str,
        query_json: &str,
    ) -> Result<(String, u64), EventStoreError> {
        let what = "opening a durable stream";
        self.connection
            .prepare_cached(
                "INSERT INTO factstr_durable_streams (name, query, cursor) VALUES (?1, ?2, 0)
                 ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut statement| statement.execute(params![name, query_json]))
            .or_failed(what)?;
        let (query, cursor) = self
            .connection
            .prepare_cached("SELECT query, cursor FROM factstr_durable_streams WHERE name = ?1")
            .and_then(|mut statement| {
                statement.query_row([name], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
            })
            .or_failed(what)?;
        Ok((query, sql::to_sequence_number(cursor)?))
    }

    /// Publishes the committed batches in order, then answers the callers.
    fn answer(&self, handled: Vec<Handled>) {
        let mut replies = Vec::with_capacity(handled.len());
        for request in handled {
            match request {
                Handled::Append { reply, outcome } => {
                    let outcome = outcome.map(|(result, records)| {
                        self.dispatcher.publish(records);
                        result
                    });
                    replies.push(Answer::Append(reply, outcome));
                }
                Handled::OpenDurableStream { reply, outcome } => {
                    replies.push(Answer::OpenDurableStream(reply, outcome));
                }
                Handled::FlushCursors { reply } => replies.push(Answer::FlushCursors(reply)),
            }
        }
        for answer in replies {
            // A caller that gave up waiting is no reason to stop.
            let _ = match answer {
                Answer::Append(reply, outcome) => reply.send(outcome).is_ok(),
                Answer::OpenDurableStream(reply, outcome) => reply.send(outcome).is_ok(),
                Answer::FlushCursors(reply) => reply.send(Ok(())).is_ok(),
            };
        }
    }

    fn rollback(&self) {
        if !self.connection.is_autocommit()
            && let Err(error) = self.connection.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back a failed write transaction failed");
        }
    }

    /// Publishes the newest batch another connection committed, so live
    /// streams see it; the dispatcher has them read anything before it that
    /// they missed from the database.
    fn publish_foreign_commits(&mut self) {
        let data_version = match self
            .connection
            .pragma_query_value(None, "data_version", |row| row.get::<_, i64>(0))
        {
            Ok(data_version) => data_version,
            Err(error) => {
                tracing::warn!(%error, "reading PRAGMA data_version failed");
                return;
            }
        };
        if data_version == self.data_version {
            return;
        }
        self.data_version = data_version;
        match sql::newest_batch(&self.connection) {
            Ok(batch) => {
                let newest = batch.last().map_or(0, |record| record.sequence_number);
                if newest > self.dispatcher.last_published() {
                    self.dispatcher.publish(batch);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading batches committed by another process failed");
            }
        }
    }
}

impl Handled {
    /// Whether the request succeeded and wrote something to keep.
    fn wrote(&self) -> bool {
        match self {
            Handled::Append { outcome, .. } => outcome.is_ok(),
            Handled::OpenDurableStream { outcome, .. } => outcome.is_ok(),
            Handled::FlushCursors { .. } => false,
        }
    }
}

enum Answer {
    Append(Reply<AppendResult>, Result<AppendResult, EventStoreError>),
    OpenDurableStream(Reply<(String, u64)>, Result<(String, u64), EventStoreError>),
    FlushCursors(Reply<()>),
}

fn request_events(request: &WriteRequest) -> usize {
    match request {
        WriteRequest::Append { batch, .. } => batch.len(),
        _ => 1,
    }
}

/// Answers the flushes of a group with nothing to write.
fn answer_flushes(requests: Vec<WriteRequest>) {
    for request in requests {
        if let WriteRequest::FlushCursors { reply } = request {
            let _ = reply.send(Ok(()));
        }
    }
}

/// Answers every request of a group that could not start.
fn fail_all(requests: Vec<WriteRequest>, error: &EventStoreError) {
    for request in requests {
        let _ = match request {
            WriteRequest::Append { reply, .. } => reply.send(Err(error.clone())).is_ok(),
            WriteRequest::OpenDurableStream { reply, .. } => reply.send(Err(error.clone())).is_ok(),
            WriteRequest::FlushCursors { reply } => reply.send(Err(error.clone())).is_ok(),
            WriteRequest::CursorsPending | WriteRequest::Shutdown => true,
        };
    }
}

/// Answers every request of a group whose `COMMIT` failed.
fn fail_all_handled(handled: Vec<Handled>, error: &EventStoreError) {
    for request in handled {
        let _ = match request {
            Handled::Append { reply, .. } => reply.send(Err(error.clone())).is_ok(),
            Handled::OpenDurableStream { reply, .. } => reply.send(Err(error.clone())).is_ok(),
            Handled::FlushCursors { reply } => reply.send(Err(error.clone())).is_ok(),
        };
    }
}

/// The multi-row `INSERT` statements, one per chunk size.
struct InsertSql {
    events: Vec<(usize, String)>,
    terms: Vec<(usize, String)>,
}

impl InsertSql {
    fn new() -> Self {
        let build = |prefix: &str, row: &str| {
            INSERT_CHUNKS
                .iter()
                .map(|&rows| (rows, format!("{prefix}{}", vec![row; rows].join(","))))
                .collect()
        };
        Self {
            events: build(
                "INSERT INTO factstr_events (sequence_number, batch_last_sequence_number, \
                 occurred_at_micros, event_type, payload) VALUES ",
                "(?,?,?,?,?)",
            ),
            terms: build(
                "INSERT INTO factstr_payload_terms (term, event_type, sequence_number) VALUES ",
                "(?,?,?)",
            ),
        }
    }

    fn events_for(&self, left: usize) -> (usize, &str) {
        chunk_for(&self.events, left)
    }

    fn terms_for(&self, left: usize) -> (usize, &str) {
        chunk_for(&self.terms, left)
    }
}

/// The largest chunk not above `left` (`left` is at least 1).
fn chunk_for(chunks: &[(usize, String)], left: usize) -> (usize, &str) {
    chunks
        .iter()
        .find(|(rows, _)| *rows <= left)
        .map_or((1, ""), |(rows, sql)| (*rows, sql.as_str()))
}
