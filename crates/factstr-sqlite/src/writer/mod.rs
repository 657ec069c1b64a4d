//! The single writer connection: the handle callers write through, the
//! request queue, and the writer thread.
//!
//! One connection writes. Whoever holds it commits every request waiting at
//! that moment as one group (see [`transaction`]: one `BEGIN IMMEDIATE`
//! transaction and one sync for the whole group). A caller that finds the
//! connection free commits its own request (with anything queued) on its
//! own thread, so an uncontended append pays no thread hand-over; a caller
//! that finds it busy queues its request for the writer thread, which
//! commits everything queued as one group as soon as the connection is
//! free. The writer thread also writes coalesced durable cursors and
//! watches for commits of other processes.
//!
//! Durable cursor updates do not wait for a commit of their own: they are
//! folded into the next transaction (or written after a short delay when no
//! append comes), so replay is not bounded by the disk's sync rate.

mod cursors;
mod guard;
mod request;
mod transaction;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use factstr::backend::sync::lock;
use factstr::backend::{Condition, StreamDispatcher};
use factstr::{AppendResult, EventStoreError};
use futures::channel::oneshot;
use rusqlite::Connection;

use self::cursors::PendingCursorWrites;
use self::guard::WriteTransaction;
use self::request::{Reply, WriteRequest};
use self::transaction::GroupCommit;
use crate::error::writer_stopped;
use crate::read;
use crate::rows::PreparedBatch;

/// How often the idle writer thread checks whether another process
/// committed, so that live streams see those batches promptly.
const FOREIGN_COMMIT_POLL: Duration = Duration::from_millis(100);

/// How long cursor updates wait for an append to ride along with before
/// they are committed on their own.
const CURSOR_FLUSH_DELAY: Duration = Duration::from_millis(10);

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
    pending_cursors: PendingCursorWrites,
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
            }),
            pending_cursors: PendingCursorWrites::default(),
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

    /// Appends `batch`, if `condition` holds, through the writer thread, and
    /// completes once it committed and was published. Unlike
    /// [`append`](Self::append), the caller's thread never commits, so an
    /// async runtime's worker is not held for the length of a commit.
    pub(crate) fn append_awaited(
        &self,
        batch: PreparedBatch,
        condition: Option<Condition>,
    ) -> impl Future<Output = Result<AppendResult, EventStoreError>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            let (reply, answer) = oneshot::channel();
            shared.enqueue(WriteRequest::Append {
                batch,
                condition,
                reply: Reply::Awaited(reply),
            })?;
            answer.await.map_err(|_| writer_stopped())?
        }
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
        if self.shared.pending_cursors.record(name, cursor) {
            self.shared.enqueue(WriteRequest::CursorsPending)?;
        }
        Ok(())
    }

    /// The greatest pending (not yet written) cursor of `name`, if any.
    pub(crate) fn pending_cursor(&self, name: &str) -> Option<u64> {
        self.shared.pending_cursors.get(name)
    }

    /// Writes every pending cursor update and returns once committed.
    pub(crate) fn flush_durable_cursors(&self) -> Result<(), EventStoreError> {
        self.call(|reply| WriteRequest::FlushCursors { reply })
    }

    /// Runs `work` in a write transaction on the writer connection, while no
    /// group of this store commits: the store operations (an import, moving
    /// a cursor) write there. Committed when `work` succeeds, rolled back
    /// otherwise.
    pub(crate) fn in_transaction<T>(
        &self,
        what: &str,
        work: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let connection = self.shared.lock_connection();
        let Some(connection) = &connection.connection else {
            return Err(writer_stopped());
        };
        let transaction =
            WriteTransaction::begin(connection, &self.shared.pending_cursors, HashMap::new())?;
        let value = work(connection)?;
        transaction.commit(what)?;
        Ok(value)
    }

    /// Commits what is queued and pending, closes the connection and stops
    /// the writer thread. Later calls fail with `BackendFailure`.
    pub(crate) fn shutdown(&self) {
        self.shared.stop();
        let handle = lock(&self.thread).take();
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
        let request = request(Reply::Blocking(reply));
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
        lock(&self.queue)
    }

    fn lock_connection(&self) -> MutexGuard<'_, WriterConnection> {
        lock(&self.connection)
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

impl WriterConnection {
    /// Commits one group and answers its requests.
    fn commit_group(&mut self, requests: Vec<WriteRequest>, shared: &WriterShared) {
        let Some(connection) = &self.connection else {
            let error = writer_stopped();
            for request in requests {
                request.fail(&error);
            }
            return;
        };
        GroupCommit::new(connection, &shared.dispatcher, &shared.pending_cursors).run(requests);
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
        match read::newest_batch(connection) {
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
