//! The single writer connection and group commit.
//!
//! One connection writes. Whoever holds it commits every request waiting at
//! that moment in one `BEGIN IMMEDIATE` transaction (group commit: one sync
//! for the whole group). A caller that finds the connection free commits its
//! own request (with anything queued) on its own thread, so an uncontended
//! append pays no thread hand-over; a caller that finds it busy queues its
//! request for the writer thread, which commits everything queued as one
//! group as soon as the connection is free. The writer thread also writes
//! coalesced durable cursors and watches for commits of other processes.
//!
//! Each conditional append is checked in order against the database as the
//! earlier requests of its group left it; a conflict or a failing request
//! fails alone (requests of a group run inside savepoints), and never aborts
//! the others. After `COMMIT` succeeded, and before the connection is
//! released, every committed batch is published to the stream dispatcher in
//! commit order; then the callers are answered. If `COMMIT` fails, every
//! request of the group fails with `BackendFailure` and nothing is published.
//!
//! Durable cursor updates do not wait for a commit of their own: they are
//! folded into the next transaction (or written after a short delay when no
//! append comes), so replay is not bounded by the disk's sync rate.

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::backend::{StreamDispatcher, commit_timestamp, committed_batch};
use factstr::{AppendResult, EventQuery, EventRecord, EventStoreError, NewEvent};
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::error::{SqliteResultExt, writer_stopped};
use crate::{index, sql};

/// How often the idle writer thread checks whether another process
/// committed, so that live streams see those batches promptly.
const FOREIGN_COMMIT_POLL: Duration = Duration::from_millis(100);

/// How long cursor updates wait for an append to ride along with before
/// they are committed on their own.
const CURSOR_FLUSH_DELAY: Duration = Duration::from_millis(10);

/// SQLite's default limit on the length of a text value.
const MAX_TEXT_BYTES: usize = 1_000_000_000;

/// Inserts the payload index documents of a batch whose first sequence
/// number is `?1`, from the JSON array `?2`; an empty document (a payload
/// without terms) gets no row.
pub(crate) const INSERT_INDEX_DOCUMENTS: &str = "INSERT INTO factstr_payload_index (rowid, terms) \
     SELECT ?1 + key, value FROM json_each(?2) WHERE value <> ''";

/// Rows per multi-row `INSERT`; a batch is written with the largest sizes
/// first.
const INSERT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// An event ready to be written: its JSON text computed by the calling
/// thread, outside the writer.
pub(crate) struct PreparedEvent {
    event_type: String,
    payload: Value,
    payload_json: String,
}

/// A validated batch ready to be written.
pub(crate) struct PreparedBatch {
    events: Vec<PreparedEvent>,
    /// The payload index documents of the events, in order: JSON strings
    /// separated by commas (see [`index::push_document`]).
    index_documents: String,
    /// Some payload of the batch has a term.
    has_terms: bool,
}

impl PreparedBatch {
    /// Serialises `new_events` (already checked by
    /// `factstr::backend::validation`) and computes their index documents;
    /// refuses what SQLite cannot store.
    pub(crate) fn new(new_events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut events = Vec::with_capacity(new_events.len());
        let mut index_documents = String::with_capacity(new_events.len() * 64);
        let mut has_terms = false;
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
            has_terms |= !terms.is_empty();
            if index > 0 {
                index_documents.push(',');
            }
            index::push_document(&mut index_documents, &terms);
            events.push(PreparedEvent {
                event_type: event.event_type,
                payload: event.payload,
                payload_json,
            });
        }
        Ok(Self {
            events,
            index_documents,
            has_terms,
        })
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    /// The batch's payload index documents, and whether any is not empty.
    fn take_index_documents(&mut self) -> (String, bool) {
        (mem::take(&mut self.index_documents), self.has_terms)
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
}

/// Durable cursor updates not yet written, greatest value per stream.
#[derive(Default)]
struct PendingCursors {
    state: Mutex<PendingCursorState>,
}

#[derive(Default)]
struct PendingCursorState {
    cursors: HashMap<String, u64>,
    /// A `CursorsPending` request is on its way to the writer thread.
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

/// The handle callers use to write.
pub(crate) struct Writer {
    shared: Arc<WriterShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What callers and the writer thread share.
struct WriterShared {
    queue: Mutex<RequestQueue>,
    /// Wakes the writer thread when a request is queued or it must stop.
    queued: Condvar,
    /// The writer connection; whoever holds it commits.
    connection: Mutex<WriterConnection>,
    pending_cursors: PendingCursors,
    dispatcher: Arc<StreamDispatcher>,
}

#[derive(Default)]
struct RequestQueue {
    requests: VecDeque<WriteRequest>,
    /// Set when the store closes (or the writer thread ended): no request is
    /// accepted any more.
    stopping: bool,
}

/// The writer connection and what belongs to it.
struct WriterConnection {
    /// `None` once the store closed.
    connection: Option<Connection>,
    /// `PRAGMA data_version` when last looked at; it changes when another
    /// connection commits.
    data_version: i64,
    insert_sql: InsertSql,
}

impl Writer {
    /// Starts the writer on `connection`. `data_version` is the connection's
    /// `PRAGMA data_version` when the dispatcher's starting point was read.
    pub(crate) fn start(
        connection: Connection,
        data_version: i64,
        dispatcher: Arc<StreamDispatcher>,
    ) -> Result<Self, EventStoreError> {
        let shared = Arc::new(WriterShared {
            queue: Mutex::new(RequestQueue::default()),
            queued: Condvar::new(),
            connection: Mutex::new(WriterConnection {
                connection: Some(connection),
                data_version,
                insert_sql: InsertSql::new(),
            }),
            pending_cursors: PendingCursors::default(),
            dispatcher,
        });
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("factstr-sqlite-writer".to_owned())
            .spawn(move || run_writer_thread(&thread_shared))
            .map_err(|error| {
                EventStoreError::backend(format!("cannot start the SQLite writer thread: {error}"))
            })?;
        Ok(Self {
            shared,
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
            let mut state = self.shared.pending_cursors.lock();
            match state.cursors.get_mut(name) {
                Some(pending) => *pending = (*pending).max(cursor),
                None => {
                    state.cursors.insert(name.to_owned(), cursor);
                }
            }
            !mem::replace(&mut state.announced, true)
        };
        if announce {
            self.shared.enqueue(WriteRequest::CursorsPending)?;
        }
        Ok(())
    }

    /// The greatest pending (not yet written) cursor of `name`, if any.
    pub(crate) fn pending_cursor(&self, name: &str) -> Option<u64> {
        self.shared
            .pending_cursors
            .lock()
            .cursors
            .get(name)
            .copied()
    }

    /// Writes every pending cursor update and returns once committed.
    pub(crate) fn flush_durable_cursors(&self) -> Result<(), EventStoreError> {
        self.call(|reply| WriteRequest::FlushCursors { reply })
    }

    /// Commits what is queued and pending, closes the connection and stops
    /// the writer thread. Later calls fail with `BackendFailure`.
    pub(crate) fn shutdown(&self) {
        self.shared.stop();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
            && handle.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }

    /// Commits `request` now if the connection is free, otherwise queues it
    /// for the writer thread; returns its answer.
    fn call<T>(
        &self,
        request: impl FnOnce(Reply<T>) -> WriteRequest,
    ) -> Result<T, EventStoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let request = request(reply);
        let connection = match self.shared.connection.try_lock() {
            Ok(connection) => Some(connection),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        match connection {
            Some(mut connection) => {
                let mut group = self.shared.take_queued();
                group.push(request);
                connection.commit_group(group, &self.shared);
            }
            None => self.shared.enqueue(request)?,
        }
        answer.recv().map_err(|_| writer_stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Normally already done when the store closed.
        self.shutdown();
    }
}

impl WriterShared {
    fn queue(&self) -> MutexGuard<'_, RequestQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_connection(&self) -> MutexGuard<'_, WriterConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, request: WriteRequest) -> Result<(), EventStoreError> {
        let mut queue = self.queue();
        if queue.stopping {
            return Err(writer_stopped());
        }
        queue.requests.push_back(request);
        self.queued.notify_one();
        Ok(())
    }

    fn take_queued(&self) -> Vec<WriteRequest> {
        self.queue().requests.drain(..).collect()
    }

    /// Waits up to `timeout` for queued requests; returns them and whether
    /// the writer must stop.
    fn wait_for_requests(&self, timeout: Duration) -> (Vec<WriteRequest>, bool) {
        let queue = self.queue();
        let (mut queue, _) = self
            .queued
            .wait_timeout_while(queue, timeout, |queue| {
                queue.requests.is_empty() && !queue.stopping
            })
            .unwrap_or_else(PoisonError::into_inner);
        (queue.requests.drain(..).collect(), queue.stopping)
    }

    fn stop(&self) {
        self.queue().stopping = true;
        self.queued.notify_all();
    }
}

/// The writer thread: commits queued requests as groups, writes coalesced
/// cursors, watches for other processes' commits, and on stop commits what
/// is left and closes the connection.
fn run_writer_thread(shared: &WriterShared) {
    // Runs also when this thread unwinds: callers must never wait for a
    // writer that is gone.
    struct Closing<'a>(&'a WriterShared);
    impl Drop for Closing<'_> {
        fn drop(&mut self) {
            self.0.stop();
            let abandoned = self.0.take_queued();
            let mut connection = self.0.lock_connection();
            connection.commit_group(abandoned, self.0);
            connection.commit_group(Vec::new(), self.0);
            connection.connection = None;
        }
    }
    let _closing = Closing(shared);
    loop {
        let (mut group, stopping) = shared.wait_for_requests(FOREIGN_COMMIT_POLL);
        if stopping {
            shared.lock_connection().commit_group(group, shared);
            return;
        }
        if group.is_empty() {
            shared
                .lock_connection()
                .publish_foreign_commits(&shared.dispatcher);
            continue;
        }
        if group
            .iter()
            .all(|request| matches!(request, WriteRequest::CursorsPending))
        {
            let (more, stopping) = shared.wait_for_requests(CURSOR_FLUSH_DELAY);
            group.extend(more);
            if stopping {
                shared.lock_connection().commit_group(group, shared);
                return;
            }
        }
        let mut connection = shared.lock_connection();
        group.extend(shared.take_queued());
        connection.commit_group(group, shared);
    }
}

/// The last committed sequence number and commit time, tracked through a
/// group.
struct Head {
    last_sequence_number: u64,
    last_commit_time: Option<DateTime<Utc>>,
}

/// Payload index documents of a group's appends, written at the end of the
/// group: a JSON array (without its closing bracket) of the documents of
/// the events `first`, `first + 1`, ...
#[derive(Default)]
struct UnindexedDocuments {
    first: u64,
    documents: String,
    /// How many documents `documents` holds.
    count: u64,
    /// Some document is not empty.
    has_terms: bool,
}

impl UnindexedDocuments {
    /// The sequence number the next document would belong to; `None` when
    /// nothing is collected.
    fn next_sequence_number(&self) -> Option<u64> {
        (self.count > 0).then_some(self.first + self.count)
    }
}

/// The greatest sequence number of an event of `handled` appends matching
/// `query`.
fn newest_match_of(handled: &[Handled], query: &EventQuery) -> Option<u64> {
    handled.iter().rev().find_map(|request| match request {
        Handled::Append {
            outcome: Ok((_, records)),
            ..
        } => records
            .iter()
            .rev()
            .find(|record| query.matches_record(record))
            .map(|record| record.sequence_number),
        _ => None,
    })
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

impl WriterConnection {
    /// Commits one group and answers its requests.
    fn commit_group(&mut self, requests: Vec<WriteRequest>, shared: &WriterShared) {
        let Some(connection) = &self.connection else {
            fail_all(requests, &writer_stopped());
            return;
        };
        let group = GroupCommit {
            connection,
            insert_sql: &self.insert_sql,
            dispatcher: &shared.dispatcher,
            pending_cursors: &shared.pending_cursors,
        };
        group.run(requests);
    }

    /// Publishes the newest batch another connection committed, so live
    /// streams see it; the dispatcher has them read anything before it that
    /// they missed from the database.
    fn publish_foreign_commits(&mut self, dispatcher: &StreamDispatcher) {
        let Some(connection) = &self.connection else {
            return;
        };
        let data_version =
            match connection.pragma_query_value(None, "data_version", |row| row.get::<_, i64>(0)) {
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
        match sql::newest_batch(connection) {
            Ok(batch) => {
                let newest = batch.last().map_or(0, |record| record.sequence_number);
                if newest > dispatcher.last_published() {
                    dispatcher.publish(batch);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading batches committed by another process failed");
            }
        }
    }
}

/// One group's transaction on the writer connection.
struct GroupCommit<'a> {
    connection: &'a Connection,
    insert_sql: &'a InsertSql,
    dispatcher: &'a StreamDispatcher,
    pending_cursors: &'a PendingCursors,
}

impl GroupCommit<'_> {
    fn run(&self, requests: Vec<WriteRequest>) {
        if !self.connection.is_autocommit() {
            // A panic left a transaction open; nothing of it was answered.
            self.rollback();
        }
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
        let mut head = match sql::last_committed(self.connection) {
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
        let mut unindexed = UnindexedDocuments::default();
        for request in requests {
            match request {
                WriteRequest::Append {
                    mut batch,
                    condition,
                    reply,
                } => {
                    let (documents, has_terms) = batch.take_index_documents();
                    let outcome = self.in_savepoint(savepoints, |writer| {
                        writer.write_append(&mut head, batch, condition, &handled)
                    });
                    if let Ok((result, _)) = &outcome
                        && let Err(error) =
                            self.add_unindexed(&mut unindexed, result, &documents, has_terms)
                    {
                        handled.push(Handled::Append { reply, outcome });
                        self.rollback();
                        self.pending_cursors.restore(cursors);
                        fail_all_handled(handled, &error);
                        return;
                    }
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
                WriteRequest::CursorsPending => {}
            }
            if self.connection.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): nothing of the group is kept, and every request
                // gets the error that caused it.
                let error = match handled.last().and_then(Handled::failure) {
                    Some(EventStoreError::BackendFailure { message }) => EventStoreError::backend(
                        format!("SQLite rolled back the write transaction: {message}"),
                    ),
                    _ => EventStoreError::backend(
                        "SQLite rolled back the write transaction after an error",
                    ),
                };
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
        let committed = self.insert_unindexed(&unindexed).and_then(|()| {
            self.connection
                .prepare_cached("COMMIT")
                .and_then(|mut statement| statement.execute([]))
                .or_failed_on(self.connection, "committing appended events")
        });
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
            .or_failed_on(self.connection, "starting a write transaction")?;
        if cursors.is_empty() {
            return Ok(());
        }
        let mut statement = self
            .connection
            .prepare_cached(
                "UPDATE factstr_durable_streams SET cursor = MAX(cursor, ?2) WHERE name = ?1",
            )
            .or_failed_on(self.connection, "writing durable cursors")?;
        for (name, cursor) in cursors {
            statement
                .execute(params![name, sql::to_sql_integer(*cursor)])
                .or_failed_on(self.connection, "writing durable cursors")?;
        }
        Ok(())
    }

    /// Runs one request, inside a savepoint when other work shares the
    /// transaction, so that its failure undoes only its own writes.
    fn in_savepoint<T>(
        &self,
        savepoint: bool,
        write: impl FnOnce(&Self) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        if !savepoint {
            return write(self);
        }
        self.connection
            .prepare_cached("SAVEPOINT factstr_request")
            .and_then(|mut statement| statement.execute([]))
            .or_failed_on(self.connection, "starting a savepoint")?;
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

    /// Checks the condition, if any, and writes the batch's events (its
    /// payload index documents are written by the caller). `earlier` are
    /// the requests of the group handled before: their events are written,
    /// but not yet in the payload index.
    fn write_append(
        &self,
        head: &mut Head,
        batch: PreparedBatch,
        condition: Option<Condition>,
        earlier: &[Handled],
    ) -> Result<(AppendResult, Vec<EventRecord>), EventStoreError> {
        if let Some(condition) = condition {
            let query = &condition.context_query;
            let actual =
                sql::context_version(self.connection, query)?.max(newest_match_of(earlier, query));
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
            .or_failed_on(self.connection, "writing events")?;
        head.last_sequence_number = last;
        head.last_commit_time = Some(occurred_at);

        let events = batch
            .events
            .into_iter()
            .map(|event| NewEvent::new(event.event_type, event.payload));
        Ok(committed_batch(events, first, occurred_at))
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

    /// Adds the payload index `documents` of the batch `appended` to those
    /// written at the end of the group. The appends of a group take
    /// consecutive sequence numbers, so they are normally all written in
    /// one statement; a gap (which the group's bookkeeping rules out)
    /// writes what is collected first.
    fn add_unindexed(
        &self,
        unindexed: &mut UnindexedDocuments,
        appended: &AppendResult,
        documents: &str,
        has_terms: bool,
    ) -> Result<(), EventStoreError> {
        let first = appended.first_sequence_number;
        if unindexed.next_sequence_number() != Some(first) {
            self.insert_unindexed(unindexed)?;
            *unindexed = UnindexedDocuments {
                first,
                documents: String::from("["),
                count: 0,
                has_terms: false,
            };
        }
        if unindexed.count > 0 {
            unindexed.documents.push(',');
        }
        unindexed.documents.push_str(documents);
        unindexed.count += appended.committed_count;
        unindexed.has_terms |= has_terms;
        Ok(())
    }

    /// Writes the collected payload index documents in one statement. FTS5
    /// writes the documents it holds as a new segment whenever a later
    /// statement or savepoint of the transaction starts, so writing them
    /// once, after the group's savepoints, gives one segment per group.
    fn insert_unindexed(&self, unindexed: &UnindexedDocuments) -> Result<(), EventStoreError> {
        if !unindexed.has_terms {
            return Ok(());
        }
        let mut documents = String::with_capacity(unindexed.documents.len() + 1);
        documents.push_str(&unindexed.documents);
        documents.push(']');
        self.connection
            .prepare_cached(INSERT_INDEX_DOCUMENTS)
            .and_then(|mut statement| {
                statement.execute(params![sql::to_sql_integer(unindexed.first), documents])
            })
            .or_failed_on(self.connection, "writing the payload index")?;
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
            .or_failed_on(self.connection, what)?;
        let (query, cursor) = self
            .connection
            .prepare_cached("SELECT query, cursor FROM factstr_durable_streams WHERE name = ?1")
            .and_then(|mut statement| {
                statement.query_row([name], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
            })
            .or_failed_on(self.connection, what)?;
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
}

impl Handled {
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
}

enum Answer {
    Append(Reply<AppendResult>, Result<AppendResult, EventStoreError>),
    OpenDurableStream(Reply<(String, u64)>, Result<(String, u64), EventStoreError>),
    FlushCursors(Reply<()>),
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
            WriteRequest::CursorsPending => true,
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
        }
    }

    fn events_for(&self, left: usize) -> (usize, &str) {
        chunk_for(&self.events, left)
    }
}

/// The largest chunk not above `left` (`left` is at least 1).
fn chunk_for(chunks: &[(usize, String)], left: usize) -> (usize, &str) {
    chunks
        .iter()
        .find(|(rows, _)| *rows <= left)
        .map_or((1, ""), |(rows, sql)| (*rows, sql.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::mpsc::Receiver;

    use factstr::EventFilter;
    use serde_json::json;

    use super::*;
    use crate::{SqliteStoreOptions, schema};

    fn append_request(
        payloads: &[Value],
        condition: Option<(&EventQuery, Option<u64>)>,
    ) -> (
        WriteRequest,
        Receiver<Result<AppendResult, EventStoreError>>,
    ) {
        let (reply, answer) = mpsc::sync_channel(1);
        let events = payloads
            .iter()
            .map(|payload| NewEvent::new("noted", payload.clone()))
            .collect();
        let request = WriteRequest::Append {
            batch: PreparedBatch::new(events).unwrap(),
            condition: condition.map(|(context_query, expected_context_version)| Condition {
                context_query: context_query.clone(),
                expected_context_version,
            }),
            reply,
        };
        (request, answer)
    }

    #[test]
    fn conditions_in_a_group_see_the_earlier_appends_before_they_are_indexed() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("events.db");
        let options = SqliteStoreOptions::default();
        let connection = schema::open_writer_connection(&path, &options).unwrap();
        let insert_sql = InsertSql::new();
        let dispatcher = StreamDispatcher::new(0);
        let pending_cursors = PendingCursors::default();
        let group = GroupCommit {
            connection: &connection,
            insert_sql: &insert_sql,
            dispatcher: &dispatcher,
            pending_cursors: &pending_cursors,
        };
        // Only the payload index can narrow this context.
        let context = EventQuery::all()
            .with_filters([EventFilter::default().with_payload_predicates([json!({"k": "x"})])]);
        let x = json!({"k": "x"});
        let (requests, answers): (Vec<_>, Vec<_>) = [
            append_request(&[x.clone(), json!({"k": "y"})], None),
            append_request(std::slice::from_ref(&x), Some((&context, None))),
            append_request(std::slice::from_ref(&x), Some((&context, Some(1)))),
            append_request(&[json!({})], None),
            append_request(std::slice::from_ref(&x), Some((&context, Some(3)))),
            append_request(&[x], Some((&context, Some(5)))),
        ]
        .into_iter()
        .unzip();
        group.run(requests);
        let outcomes: Vec<_> = answers
            .into_iter()
            .map(|answer| {
                answer
                    .recv()
                    .unwrap()
                    .map(|result| result.first_sequence_number)
            })
            .collect();
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
        let reader = schema::open_reader_connection(&path, &options).unwrap();
        let result = sql::query(&reader, &context).unwrap();
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
            sql::query(&reader, &other).unwrap().current_context_version,
            Some(2)
        );
    }
}
