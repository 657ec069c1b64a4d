//! `PostgresStore`: the `EventStore` methods over the parts `start` runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use factstr::backend::{CommittedLog, Condition, StreamDispatcher, validation};
use factstr::{
    AppendResult, AsyncEventStore, DurableStream, EventQuery, EventStore, EventStoreError,
    EventStream, HandleStream, NewEvent, QueryResult, StoreFuture,
};
use sqlx::postgres::PgConnectOptions;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::bridge::{StoreWork, run_for_caller, run_on, spawned, wait};
use crate::committed_log::PostgresLog;
use crate::connect::{DatabaseToCreate, parse_url};
use crate::durable::DurableStreams;
use crate::options::{PostgresBootstrapOptions, PostgresStoreOptions};
use crate::publish::Publication;
use crate::read::Reader;
use crate::rows::PreparedBatch;
use crate::schema::SchemaNames;
use crate::start::start;
use crate::writer::Appends;

/// How long closing the store waits for durable cursors to be written.
const CLOSE_CURSOR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The FACTSTR event store on PostgreSQL: many processes, one log.
///
/// The store keeps its tables in the schema the connection's `search_path`
/// names and creates them when missing. Every process connected to the same
/// schema shares one log: sequence numbers are global and gapless,
/// conditional appends are atomic across processes, live streams receive
/// the batches every process commits, and a durable stream name is active in
/// at most one process at a time. See the crate documentation and
/// `docs/postgres.md` for the schema, locking and notification design.
///
/// # Implementation
///
/// The store owns a small tokio runtime (threads it starts) and runs every
/// database operation there. The async API ([`AsyncEventStore`]) awaits
/// that work without blocking the caller's runtime, whatever its flavour;
/// the sync API ([`EventStore`]) is the same work, waited for on the
/// calling thread. So both work from any thread, including from inside
/// another tokio runtime and from stream handlers, and never call
/// `block_on` on the caller's thread. Appends go to one writer task that
/// commits the appends waiting at the same moment in one transaction under
/// a transaction-scoped advisory lock, and hands each committed batch to the
/// shared `StreamDispatcher` before it answers. A listener task receives the
/// commit notifications of every process, and a publisher task reads and
/// publishes the batches other processes committed, in commit order.
///
/// # Dropping
///
/// Dropping the store closes it on the dropping thread, in two bounded
/// steps:
///
/// 1. its streams deliver the batches committed before the drop, for at
///    most [`CLOSE_PATIENCE`](factstr::backend::CLOSE_PATIENCE)
///    (5 s) in all; a stream still busy then stops after its handler call
///    in progress (a durable one resumes after its last written cursor);
/// 2. the durable streams' last cursors are written and their names
///    released, for at most 5 s; cursors not written by then (the server is
///    unreachable) are lost, and their batches delivered again next time.
///
/// With no stream running it returns at once. The work stays on the
/// dropping thread so that, when the drop returns, the cursors are stored
/// and the names free for another process, also when the process exits
/// right after. In async code the drop therefore blocks the runtime worker
/// running it for up to those 10 s: drop the store inside
/// `tokio::task::spawn_blocking` there. It never panics, inside a runtime of
/// either flavour or outside one. A handler that drops the store of its own
/// stream is not waited for.
pub struct PostgresStore {
    names: Arc<SchemaNames>,
    reader: Reader,
    dispatcher: Arc<StreamDispatcher>,
    log: Arc<PostgresLog>,
    durable: DurableStreams,
    publication: Publication,
    appends: Appends,
    /// Where the store's work runs.
    handle: Handle,
    runtime: Option<Runtime>,
}

impl PostgresStore {
    /// Connects with default [`PostgresStoreOptions`] to the database `url`
    /// names (`postgres://user:password@host:port/database?...`) and uses
    /// the schema its `search_path` names, creating the store's tables when
    /// missing.
    ///
    /// A malformed URL is `InvalidInput`; a server that cannot be reached or
    /// refuses is `BackendFailure`.
    ///
    /// A factstr-postgres 0.5.x log in that schema (tables `events`,
    /// `append_batches`, `durable_stream_cursors`, `store_metadata`) is
    /// brought over while the store's tables are created, in one
    /// transaction: every event with its sequence number, commit time, type
    /// and payload, every batch boundary, and every durable stream with its
    /// query and cursor. The 0.5.x tables are left as they were. If 0.5.x
    /// appended to them after that, connecting fails with `InvalidInput`
    /// saying how to keep one of the two logs. See
    /// `docs/migrating-from-0.5.md`.
    pub fn connect(url: &str) -> Result<Self, EventStoreError> {
        Self::connect_with(url, PostgresStoreOptions::default())
    }

    /// Like [`connect`](Self::connect), with `options`.
    pub fn connect_with(url: &str, options: PostgresStoreOptions) -> Result<Self, EventStoreError> {
        Self::open(parse_url(url)?, options, None)
    }

    /// Creates the database `bootstrap.database_name` on the server
    /// `bootstrap.server_url` when it does not exist, then connects to it
    /// like [`connect`](Self::connect).
    ///
    /// The name must match `[A-Za-z_][A-Za-z0-9_]*` (at most 63 characters);
    /// any other name is `InvalidInput`, returned before the server is
    /// contacted. Safe when several processes bootstrap the same database at
    /// once.
    pub fn bootstrap(bootstrap: PostgresBootstrapOptions) -> Result<Self, EventStoreError> {
        Self::bootstrap_with(bootstrap, PostgresStoreOptions::default())
    }

    /// Like [`bootstrap`](Self::bootstrap), with `options`.
    pub fn bootstrap_with(
        bootstrap: PostgresBootstrapOptions,
        options: PostgresStoreOptions,
    ) -> Result<Self, EventStoreError> {
        let database = DatabaseToCreate::of(bootstrap)?;
        Self::open(database.connect_options(), options, Some(database))
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        self.names.schema()
    }

    fn open(
        connect_options: PgConnectOptions,
        options: PostgresStoreOptions,
        database_to_create: Option<DatabaseToCreate>,
    ) -> Result<Self, EventStoreError> {
        let (runtime, parts) = start(connect_options, options, database_to_create)?;
        Ok(Self {
            names: parts.names,
            reader: parts.reader,
            dispatcher: parts.dispatcher,
            log: parts.log,
            durable: parts.durable,
            publication: parts.publication,
            appends: parts.appends,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn committed_log(&self) -> Arc<dyn CommittedLog> {
        Arc::clone(&self.log) as Arc<dyn CommittedLog>
    }

    /// The table names, the reader, the dispatcher's view of the log and the
    /// runtime, for the store operations (`operations.rs`).
    pub(crate) fn parts(&self) -> (&Arc<SchemaNames>, &Reader, &PostgresLog, &Handle) {
        (&self.names, &self.reader, &self.log, &self.handle)
    }

    /// Wraps a durable stream's handler so that each call first makes sure
    /// this process still holds the stream's lock (see `durable.rs`).
    fn claim_checked(&self, durable_stream: &DurableStream, handle: HandleStream) -> HandleStream {
        self.durable
            .checked_handler(&self.handle, durable_stream.name(), handle)
    }

    /// Reads at most `limit` records (all with `None`) of `event_query`, for
    /// an async caller.
    fn read_query(&self, event_query: &EventQuery, limit: Option<usize>) -> StoreWork<QueryResult> {
        match self.query_work(event_query, limit) {
            Ok(work) => spawned(&self.handle, work),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    /// The same read for a sync caller.
    fn read_query_here(
        &self,
        event_query: &EventQuery,
        limit: Option<usize>,
    ) -> Result<QueryResult, EventStoreError> {
        run_for_caller(&self.handle, self.query_work(event_query, limit)?)
    }

    /// The read of at most `limit` records (all with `None`) of a valid
    /// `event_query`.
    fn query_work(
        &self,
        event_query: &EventQuery,
        limit: Option<usize>,
    ) -> Result<
        impl Future<Output = Result<QueryResult, EventStoreError>> + Send + 'static,
        EventStoreError,
    > {
        validation::validate_query(event_query)?;
        if let Some(limit) = limit {
            validation::validate_page_limit(limit)?;
        }
        let reader = self.reader.clone();
        let query = event_query.clone();
        Ok(async move { reader.query(&query, limit).await })
    }

    fn submit_append(&self, new_events: Vec<NewEvent>) -> StoreWork<AppendResult> {
        let batch = validation::validate_new_events(&new_events)
            .and_then(|()| PreparedBatch::new(new_events));
        match batch {
            Ok(batch) => self.appends.submit(batch, None),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    fn submit_append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreWork<AppendResult> {
        let batch = validation::validate_conditional_append(
            &new_events,
            context_query,
            expected_context_version,
        )
        .and_then(|()| PreparedBatch::new(new_events));
        match batch {
            Ok(batch) => self.appends.submit(
                batch,
                Some(Condition::new(context_query, expected_context_version)),
            ),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    /// Publishes every batch committed before now (see
    /// `Publication::catch_up`).
    pub(crate) fn publish_committed(&self) -> StoreWork<()> {
        spawned(&self.handle, self.publication.catch_up())
    }

    /// Publishes what was committed before a live stream registers. Best
    /// effort: while the database is unreachable the stream starts after
    /// what was published so far.
    fn start_live_stream(&self) -> impl Future<Output = ()> + Send + 'static {
        let published = self.publish_committed();
        async move {
            if let Err(error) = published.await {
                tracing::warn!(%error, "a live stream starts after the batches published so far");
            }
        }
    }

    /// Registers a live stream (of the events matching `event_query`, or of
    /// every event) once what was committed before is published.
    fn register_live<'a>(
        &'a self,
        event_query: Option<&'a EventQuery>,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        if let Some(Err(error)) = event_query.map(validation::validate_stream_query) {
            return Box::pin(std::future::ready(Err(error)));
        }
        let published = self.start_live_stream();
        Box::pin(async move {
            published.await;
            match event_query {
                None => self.dispatcher.stream_all(self.committed_log(), handle),
                Some(query) => self
                    .dispatcher
                    .stream_to(self.committed_log(), query, handle),
            }
        })
    }

    /// Registers a durable stream once what was committed before is
    /// published, and completes when its replay has finished.
    fn register_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: Option<&'a EventQuery>,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        let published = self.publish_committed();
        Box::pin(async move {
            published.await?;
            let handle = self.claim_checked(durable_stream, handle);
            // Claiming the name and reading the cursor wait for the
            // database on this thread (the dispatcher's registration is
            // synchronous, and it tells a stream re-registering from its own
            // handler by the thread). On a multi-thread runtime the worker's
            // other tasks move to another thread meanwhile; a current-thread
            // runtime waits, as it would for any blocking call, while the
            // work runs on the store's runtime. The replay is awaited.
            let start = || {
                self.dispatcher.start_durable(
                    self.committed_log(),
                    durable_stream,
                    event_query,
                    handle,
                )
            };
            let registration = match Handle::try_current() {
                Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(start)
                }
                _ => start(),
            }?;
            registration.replayed().await
        })
    }
}

impl Drop for PostgresStore {
    /// See "Dropping" in the type's documentation for what this waits for.
    fn drop(&mut self) {
        // Stop streams first: durable streams write their cursors and release
        // their locks through the runtime, which must still be running.
        self.dispatcher.close();
        let durable = self.durable.clone();
        let written = run_on(&self.handle, async move {
            tokio::time::timeout(CLOSE_CURSOR_WRITE_TIMEOUT, durable.close_all())
                .await
                .unwrap_or_else(|_| {
                    Err(EventStoreError::backend(
                        "writing durable cursors timed out",
                    ))
                })
        });
        if let Err(error) = written {
            tracing::warn!(%error, "durable cursors could not be written when the store closed");
        }
        // Never blocks and never panics, even inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresStore")
            .field("schema", &self.schema())
            .field("last_published", &self.dispatcher.last_published())
            .finish()
    }
}

/// The sync API: the async operations, waited for on the calling thread.
impl EventStore for PostgresStore {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        self.read_query_here(event_query, None)
    }

    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        self.read_query_here(event_query, Some(limit))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        wait(self.submit_append(new_events))
    }

    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError> {
        wait(self.submit_append_if(new_events, context_query, expected_context_version))
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        wait(self.register_live(None, handle))
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        wait(self.register_live(Some(event_query), handle))
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        wait(self.publish_committed())?;
        let handle = self.claim_checked(durable_stream, handle);
        self.dispatcher
            .stream_all_durable(self.committed_log(), durable_stream, handle)
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        wait(self.publish_committed())?;
        let handle = self.claim_checked(durable_stream, handle);
        self.dispatcher
            .stream_to_durable(self.committed_log(), durable_stream, event_query, handle)
    }
}

/// The async API: database work runs on the store's runtime and is awaited,
/// so no method blocks the caller's runtime worker on the database, except
/// the claim of a durable stream (see `register_durable`).
impl AsyncEventStore for PostgresStore {
    fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult> {
        self.read_query(event_query, None)
    }

    fn query_page<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: usize,
    ) -> StoreFuture<'a, QueryResult> {
        self.read_query(event_query, Some(limit))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult> {
        self.submit_append(new_events)
    }

    fn append_if<'a>(
        &'a self,
        new_events: Vec<NewEvent>,
        context_query: &'a EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreFuture<'a, AppendResult> {
        self.submit_append_if(new_events, context_query, expected_context_version)
    }

    fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream> {
        self.register_live(None, handle)
    }

    fn stream_to<'a>(
        &'a self,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        self.register_live(Some(event_query), handle)
    }

    fn stream_all_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        self.register_durable(durable_stream, None, handle)
    }

    fn stream_to_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        self.register_durable(durable_stream, Some(event_query), handle)
    }
}
