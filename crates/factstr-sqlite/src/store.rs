use std::path::{Path, PathBuf};
use std::sync::Arc;

use factstr::backend::{CommittedLog, Condition, StreamDispatcher, StreamStopSignal, validation};
use factstr::{
    AppendResult, AsyncEventStore, DurableStream, EventQuery, EventStore, EventStoreError,
    EventStream, HandleStream, NewEvent, QueryResult, StoreFuture,
};

use crate::committed_log::SqliteLog;
use crate::error::SqliteResultExt;
use crate::options::SqliteStoreOptions;
use crate::readers::{ReadThreads, ReaderPool};
use crate::rows::PreparedBatch;
use crate::writer::Writer;
use crate::{read, schema};

/// An event store in one SQLite file: durable, shared safely between
/// threads and processes.
///
/// Open it with [`SqliteStore::open`] or [`SqliteStore::open_with`]; use it
/// through [`EventStore`] or, in async code, [`AsyncEventStore`]. Dropping the store stops its streams, writes
/// pending durable cursors and closes the file.
///
/// # Implementation
///
/// The file is in WAL mode. One writer connection commits appends: every
/// append waiting at that moment goes into one `BEGIN IMMEDIATE` transaction
/// and one sync (group commit), each `append_if` checked in order against
/// the state its predecessors left. A caller that finds the connection free
/// commits on its own thread; otherwise its append waits in a queue that a
/// dedicated writer thread commits as one group. After the commit, each
/// batch is handed to the shared stream dispatcher in commit order, then the
/// callers are answered. Queries and stream reads use their own connections
/// and never wait for the writer; a query reads its records and context
/// version in one read transaction; a page ([`EventStore::query_page`])
/// reads no further than its last record. The async API hands appends to
/// the writer thread and reads to a few read threads and awaits their
/// answers, so no runtime worker waits on SQLite. Other processes may open the same file:
/// `BEGIN IMMEDIATE` and the busy timeout serialise their writers, live
/// streams see their appends too, and a durable stream runs in one process
/// at a time.
pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Writer>,
    readers: Arc<ReaderPool>,
    /// Where the async API's reads and durable registrations run.
    read_threads: ReadThreads,
    /// The same writer and readers, as the dispatcher reads them.
    log: Arc<SqliteLog>,
    dispatcher: Arc<StreamDispatcher>,
}

impl SqliteStore {
    /// Opens the store in the file at `path` with default options, creating
    /// the file and its missing parent folders when needed.
    ///
    /// A file that is not a SQLite database, a SQLite database of another
    /// application, or a FACTSTR database of a newer schema version is
    /// refused with [`EventStoreError::InvalidInput`] and left unchanged.
    ///
    /// A file written by the published factstr-sqlite 0.3.2 to 0.5.2 is
    /// brought over on first open, in one transaction: every event with its
    /// sequence number, commit time (cut to whole microseconds), type and
    /// payload, every batch boundary, and every durable stream with its
    /// query and cursor. The 0.5.x tables are left as they were. If 0.5.x
    /// appended to the file after that, the file is refused with
    /// [`EventStoreError::InvalidInput`] saying how to keep one of the two
    /// logs. See `docs/migrating-from-0.5.md`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EventStoreError> {
        Self::open_with(path, SqliteStoreOptions::default())
    }

    /// Opens the store in the file at `path` with `options`; see
    /// [`open`](Self::open).
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteStoreOptions,
    ) -> Result<Self, EventStoreError> {
        let path = path.as_ref().to_path_buf();
        check_path(&path)?;
        // Connections opened later (readers, claims) must find the same file
        // even if the process changes its working directory.
        let file = std::path::absolute(&path).map_err(|error| {
            EventStoreError::backend(format!(
                "cannot resolve the database path {}: {error}",
                path.display()
            ))
        })?;
        if let Some(parent) = file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                EventStoreError::backend(format!(
                    "cannot create the folder {} for the database: {error}",
                    parent.display()
                ))
            })?;
        }
        let connection = schema::open_writer_connection(&file, &options)?;
        // In this order, so that a commit by another process after the last
        // sequence number was read changes the data version the writer
        // watches.
        let data_version = connection
            .pragma_query_value(None, "data_version", |row| row.get::<_, i64>(0))
            .or_failed("reading the data version")?;
        let (last_committed, _) = read::last_committed(&connection)?;
        let dispatcher = Arc::new(StreamDispatcher::new(last_committed));
        let writer = Arc::new(Writer::start(
            connection,
            data_version,
            Arc::clone(&dispatcher),
        )?);
        let readers = Arc::new(ReaderPool::new(&file, &options));
        let log = Arc::new(SqliteLog::new(
            &file,
            Arc::clone(&writer),
            Arc::clone(&readers),
        ));
        Ok(Self {
            path,
            writer,
            readers,
            read_threads: ReadThreads::new(),
            log,
            dispatcher,
        })
    }

    /// The path the store was opened with.
    pub fn database_path(&self) -> &Path {
        &self.path
    }

    fn committed_log(&self) -> Arc<dyn CommittedLog> {
        Arc::clone(&self.log) as Arc<dyn CommittedLog>
    }

    /// The writer, the read connections, the dispatcher's view of the log
    /// and the dispatcher, for the store operations (`operations.rs`).
    pub(crate) fn parts(&self) -> (&Writer, &ReaderPool, &SqliteLog, &StreamDispatcher) {
        (&self.writer, &self.readers, &self.log, &self.dispatcher)
    }
}

/// Refuses paths SQLite would not treat as a file of its own.
fn check_path(path: &Path) -> Result<(), EventStoreError> {
    if path.as_os_str().is_empty() {
        return Err(EventStoreError::invalid_input(
            "the database path is empty; SQLite would use a private temporary database",
        ));
    }
    if path.as_os_str() == ":memory:" {
        return Err(EventStoreError::invalid_input(
            "the database path `:memory:` names an in-memory SQLite database, which the \
             store's connections cannot share; use factstr-memory, or `./:memory:` for a file",
        ));
    }
    Ok(())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.dispatcher.close();
        // Before the writer: a durable registration in progress there may
        // still write.
        self.read_threads.close();
        self.writer.shutdown();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("last_published", &self.dispatcher.last_published())
            .finish()
    }
}

impl EventStore for SqliteStore {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        validation::validate_query(event_query)?;
        self.readers
            .read(|connection| read::query(connection, event_query))
    }

    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        validation::validate_query(event_query)?;
        validation::validate_page_limit(limit)?;
        self.readers
            .read(|connection| read::query_page(connection, event_query, limit))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        validation::validate_new_events(&new_events)?;
        let batch = PreparedBatch::new(new_events)?;
        self.writer.append(batch, None)
    }

    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError> {
        validation::validate_conditional_append(
            &new_events,
            context_query,
            expected_context_version,
        )?;
        let batch = PreparedBatch::new(new_events)?;
        let condition = Condition::new(context_query, expected_context_version);
        self.writer.append(batch, Some(condition))
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        self.dispatcher.stream_all(self.committed_log(), handle)
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.dispatcher
            .stream_to(self.committed_log(), event_query, handle)
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.dispatcher
            .stream_all_durable(self.committed_log(), durable_stream, handle)
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.dispatcher
            .stream_to_durable(self.committed_log(), durable_stream, event_query, handle)
    }
}

/// The same operations without holding the caller's thread on SQLite:
/// appends are committed by the writer thread, reads and durable
/// registrations (claiming the name, reading the cursor) run on the read
/// threads, and the futures await their answers through oneshot channels,
/// so they work on any executor. Validation and the dispatcher's live
/// registrations, which touch no file, run inline.
impl AsyncEventStore for SqliteStore {
    fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult> {
        self.query_page_awaited(event_query, None)
    }

    fn query_page<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: usize,
    ) -> StoreFuture<'a, QueryResult> {
        self.query_page_awaited(event_query, Some(limit))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult> {
        Box::pin(async move {
            validation::validate_new_events(&new_events)?;
            let batch = PreparedBatch::new(new_events)?;
            self.writer.append_awaited(batch, None).await
        })
    }

    fn append_if<'a>(
        &'a self,
        new_events: Vec<NewEvent>,
        context_query: &'a EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreFuture<'a, AppendResult> {
        Box::pin(async move {
            validation::validate_conditional_append(
                &new_events,
                context_query,
                expected_context_version,
            )?;
            let batch = PreparedBatch::new(new_events)?;
            let condition = Condition::new(context_query, expected_context_version);
            self.writer.append_awaited(batch, Some(condition)).await
        })
    }

    fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream> {
        Box::pin(std::future::ready(EventStore::stream_all(self, handle)))
    }

    fn stream_to<'a>(
        &'a self,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        Box::pin(std::future::ready(EventStore::stream_to(
            self,
            event_query,
            handle,
        )))
    }

    fn stream_all_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        self.start_durable_awaited(durable_stream, None, handle)
    }

    fn stream_to_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        self.start_durable_awaited(durable_stream, Some(event_query), handle)
    }
}

impl SqliteStore {
    /// A query (of at most `limit` records) run on a read thread.
    fn query_page_awaited<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: Option<usize>,
    ) -> StoreFuture<'a, QueryResult> {
        Box::pin(async move {
            validation::validate_query(event_query)?;
            if let Some(limit) = limit {
                validation::validate_page_limit(limit)?;
            }
            let readers = Arc::clone(&self.readers);
            let event_query = event_query.clone();
            let limit = limit.unwrap_or(usize::MAX);
            self.read_threads
                .run(move || {
                    readers.read(|connection| read::query_page(connection, &event_query, limit))
                })
                .await
        })
    }

    /// Registers a durable stream on a read thread (claiming its name and
    /// reading its cursor touch the file), then awaits its replay.
    fn start_durable_awaited<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: Option<&'a EventQuery>,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        Box::pin(async move {
            if StreamStopSignal::current().is_some() {
                // Inside a stream's handler, on the stream's own thread: the
                // dispatcher must see the registration there to refuse a
                // handler re-registering its own name instead of waiting
                // for itself.
                return self
                    .dispatcher
                    .start_durable(self.committed_log(), durable_stream, event_query, handle)?
                    .replayed()
                    .await;
            }
            let dispatcher = Arc::clone(&self.dispatcher);
            let log = self.committed_log();
            let durable_stream = durable_stream.clone();
            let event_query = event_query.cloned();
            let registration = self
                .read_threads
                .run(move || {
                    dispatcher.start_durable(log, &durable_stream, event_query.as_ref(), handle)
                })
                .await?;
            registration.replayed().await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::SqliteDurability;

    #[test]
    fn each_durability_mode_sets_its_synchronous_level_on_the_writer() {
        let folder = tempfile::tempdir().unwrap();
        // SQLite's numbers: NORMAL is 1, FULL is 2.
        for (durability, level) in [(SqliteDurability::Full, 2), (SqliteDurability::Normal, 1)] {
            let options = SqliteStoreOptions::default().durability(durability);
            let path = folder.path().join(format!("{durability:?}.db"));
            let connection = schema::open_writer_connection(&path, &options).unwrap();
            let synchronous: i64 = connection
                .pragma_query_value(None, "synchronous", |row| row.get(0))
                .unwrap();
            assert_eq!(synchronous, level, "{durability:?}");
        }
    }

    #[test]
    fn the_store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
    }
}
