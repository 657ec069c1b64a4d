//! `PostgresStore`: connecting, bootstrapping, and the `EventStore` methods.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use factstr::backend::{CommittedLog, Condition, StreamDispatcher, StreamStopSignal, validation};
use factstr::{
    AppendResult, DurableStream, EventQuery, EventStore, EventStoreError, EventStream,
    HandleStream, NewEvent, QueryResult, StreamHandlerError,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch};

use crate::durable::DurableStreams;
use crate::error::database_failure;
use crate::listener::{CommitNews, listen_for_commits, publish_commits};
use crate::log::{PostgresLog, Reader, run_on};
use crate::options::{PostgresBootstrapOptions, PostgresStoreOptions};
use crate::schema;
use crate::writer::{AppendRequest, PreparedBatch, Writer};

/// Worker threads of each store's runtime.
const RUNTIME_THREADS: usize = 2;
/// How long closing the store waits for durable cursors to be written.
const CLOSE_CURSOR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pattern `bootstrap` accepts database names by.
const DATABASE_NAME_PATTERN: &str = "[A-Za-z_][A-Za-z0-9_]*";
/// PostgreSQL's identifier length limit (longer names are cut silently).
const MAX_DATABASE_NAME_BYTES: usize = 63;

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
/// The trait is synchronous; the store owns a small tokio runtime (threads
/// it starts) and runs every database operation there, handing the result
/// back over a channel. So its methods work from any thread, including from
/// inside another tokio runtime and from stream handlers, and never call
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
///    most [`CLOSE_PATIENCE`](factstr::backend::dispatch::CLOSE_PATIENCE)
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
    log: Arc<PostgresLog>,
    appends: mpsc::UnboundedSender<AppendRequest>,
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
        let connect_options = parse_url(url)?;
        Self::open(connect_options, options, None)
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
        validate_database_name(&bootstrap.database_name)?;
        let server = parse_url(&bootstrap.server_url)?;
        let database = server.clone().database(&bootstrap.database_name);
        Self::open(
            database,
            options,
            Some(DatabaseToCreate {
                server,
                name: bootstrap.database_name,
            }),
        )
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.log.reader.names.schema
    }

    fn open(
        connect_options: PgConnectOptions,
        options: PostgresStoreOptions,
        database_to_create: Option<DatabaseToCreate>,
    ) -> Result<Self, EventStoreError> {
        if options.max_connections == 0 {
            return Err(EventStoreError::invalid_input(
                "max_connections is 0; the store needs at least one pooled connection",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("factstr-postgres")
            .enable_all()
            .build()
            .map_err(|error| {
                EventStoreError::backend(format!("cannot start the store's runtime: {error}"))
            })?;
        let handle = runtime.handle().clone();
        let started = run_on(&handle, {
            let handle = handle.clone();
            async move {
                if let Some(database) = database_to_create {
                    database.create(options.connect_timeout).await?;
                }
                start(handle, connect_options, &options).await
            }
        });
        match started {
            Ok((log, appends)) => Ok(Self {
                log,
                appends,
                runtime: Some(runtime),
            }),
            Err(error) => {
                runtime.shutdown_background();
                Err(error)
            }
        }
    }

    fn committed_log(&self) -> Arc<dyn CommittedLog> {
        Arc::clone(&self.log) as Arc<dyn CommittedLog>
    }

    fn submit(
        &self,
        batch: PreparedBatch,
        condition: Option<Condition>,
    ) -> Result<AppendResult, EventStoreError> {
        let (reply, result) = std::sync::mpsc::sync_channel(1);
        self.appends
            .send(AppendRequest::new(batch, condition, reply))
            .map_err(|_| EventStoreError::backend("the store's writer has stopped"))?;
        result.recv().unwrap_or_else(|_| {
            Err(EventStoreError::backend(
                "the store's writer stopped before the append finished",
            ))
        })
    }

    /// Wraps a durable stream's handler so that each call first makes sure
    /// this process still holds the stream's lock (see `durable.rs`).
    fn claim_checked(&self, durable_stream: &DurableStream, handle: HandleStream) -> HandleStream {
        let durable = self.log.durable.clone();
        let runtime = self.log.runtime.clone();
        let name: Arc<str> = durable_stream.name().into();
        HandleStream::new(move |batch| {
            let (handle, durable, runtime, name) = (
                handle.clone(),
                durable.clone(),
                runtime.clone(),
                Arc::clone(&name),
            );
            async move {
                if !durable.is_confirmed(&name) {
                    let stop = StreamStopSignal::current();
                    let confirmation =
                        runtime.spawn(async move { durable.confirm(&name, stop).await });
                    match confirmation.await {
                        Ok(Ok(())) => {}
                        Ok(Err(message)) => return Err(StreamHandlerError::new(message)),
                        Err(_) => return Err(StreamHandlerError::new("the store is closed")),
                    }
                }
                handle.call(batch).await
            }
        })
    }

    /// Publishes what was committed before a live stream registers. Best
    /// effort: while the database is unreachable the stream starts after
    /// what was published so far.
    fn start_live_stream(&self) {
        if let Err(error) = self.log.publish_committed() {
            tracing::warn!(%error, "a live stream starts after the batches published so far");
        }
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, EventStoreError>> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        run_on(&self.log.runtime, work)
    }
}

/// Connects, prepares the schema and starts the store's tasks.
async fn start(
    handle: tokio::runtime::Handle,
    connect_options: PgConnectOptions,
    options: &PostgresStoreOptions,
) -> Result<(Arc<PostgresLog>, mpsc::UnboundedSender<AppendRequest>), EventStoreError> {
    let mut connect_options = connect_options;
    if connect_options.get_application_name().is_none() {
        connect_options = connect_options.application_name("factstr");
    }
    // Candidate queries bind event types and payload documents whose
    // selectivity decides between index paths; a generic plan (chosen after
    // a statement ran five times) can walk the whole table backwards.
    // A plan_cache_mode given in the URL's options wins.
    if connect_options
        .get_options()
        .is_none_or(|given| !given.contains("plan_cache_mode"))
    {
        connect_options = connect_options.options([("plan_cache_mode", "force_custom_plan")]);
    }
    if let Some(timeout) = options.statement_timeout {
        connect_options =
            connect_options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    let connector = Connector {
        options: connect_options.clone(),
        timeout: options.connect_timeout,
    };
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.connect_timeout)
        // Reads retry on a connection that died while idle (see
        // `Reader::read`); cursor writes retry in their task.
        .test_before_acquire(false)
        .connect_with(connect_options.clone())
        .await
        .map_err(|error| database_failure("cannot connect to PostgreSQL", &error))?;
    let names = {
        let mut connection = pool
            .acquire()
            .await
            .map_err(|error| database_failure("cannot connect to PostgreSQL", &error))?;
        Arc::new(schema::prepare(&mut connection).await?)
    };
    let reader = Reader {
        pool: pool.clone(),
        names: Arc::clone(&names),
    };
    let head = reader.head().await?;
    let connection_epoch = Arc::new(AtomicU64::new(0));
    let durable = DurableStreams::new(
        pool,
        Arc::clone(&names),
        connector.clone(),
        Arc::clone(&connection_epoch),
    );
    let (news, news_received) = watch::channel(CommitNews::default());
    let log = Arc::new(PostgresLog {
        runtime: handle.clone(),
        reader,
        dispatcher: StreamDispatcher::new(head),
        durable: durable.clone(),
        news: news.clone(),
        published: watch::Sender::new(head),
        connect_timeout: options.connect_timeout,
    });

    handle.spawn(publish_commits(Arc::clone(&log), news_received));
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.connect_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(connect_options);
    let (ready, listening) = oneshot::channel();
    handle.spawn(listen_for_commits(
        listener_pool,
        names.channel.clone(),
        news.clone(),
        connection_epoch,
        ready,
    ));
    listening.await.unwrap_or_else(|_| {
        Err(EventStoreError::backend(
            "the task listening for commits stopped",
        ))
    })?;
    handle.spawn(durable.write_cursors());
    let (appends, requests) = mpsc::unbounded_channel();
    handle.spawn(
        Writer::new(connector, names, Arc::clone(&log), log.reader.pool.clone()).run(requests),
    );
    Ok((log, appends))
}

impl Drop for PostgresStore {
    /// See "Dropping" in the type's documentation for what this waits for.
    fn drop(&mut self) {
        // Stop streams first: durable streams write their cursors and release
        // their locks through the runtime, which must still be running.
        self.log.dispatcher.close();
        let durable = self.log.durable.clone();
        let written = self.run(async move {
            let closed_and_written = async {
                durable.closed().await;
                durable.write_all_cursors().await
            };
            tokio::time::timeout(CLOSE_CURSOR_WRITE_TIMEOUT, closed_and_written)
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
            .field("last_published", &self.log.dispatcher.last_published())
            .finish()
    }
}

impl EventStore for PostgresStore {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        validation::validate_query(event_query)?;
        let reader = self.log.reader.clone();
        let query = event_query.clone();
        self.run(async move { reader.query(&query).await })
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        validation::validate_new_events(&new_events)?;
        self.submit(PreparedBatch::new(new_events)?, None)
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
        self.submit(
            batch,
            Some(Condition::new(context_query, expected_context_version)),
        )
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        self.start_live_stream();
        self.log.dispatcher.stream_all(self.committed_log(), handle)
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        validation::validate_stream_query(event_query)?;
        self.start_live_stream();
        self.log
            .dispatcher
            .stream_to(self.committed_log(), event_query, handle)
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.log.publish_committed()?;
        let handle = self.claim_checked(durable_stream, handle);
        self.log
            .dispatcher
            .stream_all_durable(self.committed_log(), durable_stream, handle)
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.log.publish_committed()?;
        let handle = self.claim_checked(durable_stream, handle);
        self.log.dispatcher.stream_to_durable(
            self.committed_log(),
            durable_stream,
            event_query,
            handle,
        )
    }
}

/// Opens connections of their own (not from the pool) for the writer and
/// durable stream claims, bounded by the connect timeout.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    options: PgConnectOptions,
    timeout: Duration,
}

impl Connector {
    pub(crate) async fn connect(&self, purpose: &str) -> Result<PgConnection, EventStoreError> {
        match tokio::time::timeout(self.timeout, PgConnection::connect_with(&self.options)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(database_failure(
                &format!("cannot connect to PostgreSQL to {purpose}"),
                &error,
            )),
            Err(_) => Err(EventStoreError::backend(format!(
                "cannot connect to PostgreSQL to {purpose}: no connection within {:?}",
                self.timeout
            ))),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A database `bootstrap` creates when missing.
struct DatabaseToCreate {
    server: PgConnectOptions,
    name: String,
}

impl DatabaseToCreate {
    /// Creates the database unless it exists. When two processes create it
    /// at once, the one that loses sees it created and goes on.
    async fn create(&self, timeout: Duration) -> Result<(), EventStoreError> {
        let mut connection = self.maintenance_connection(timeout).await?;
        let failed = |error: sqlx::Error| {
            database_failure(&format!("cannot create database {}", self.name), &error)
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&self.name)
                .fetch_one(&mut connection)
                .await
                .map_err(failed)?;
        if !exists {
            // The name matched DATABASE_NAME_PATTERN: quoting it is safe.
            let created = connection
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{}\"",
                    self.name
                )))
                .await;
            match created {
                Ok(_) => tracing::info!(database = %self.name, "created the database"),
                Err(sqlx::Error::Database(error))
                    if matches!(error.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(error) => return Err(failed(error)),
            }
        }
        let _ = connection.close().await;
        Ok(())
    }

    /// A connection to the `postgres` database (or `template1` where there
    /// is none), from which databases are created.
    async fn maintenance_connection(
        &self,
        timeout: Duration,
    ) -> Result<PgConnection, EventStoreError> {
        let mut last_error = None;
        for database in ["postgres", "template1"] {
            let options = self.server.clone().database(database);
            match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(sqlx::Error::Database(error)))
                    if error.code().as_deref() == Some("3D000") =>
                {
                    last_error = Some(database_failure(
                        "cannot connect to the server to create a database",
                        &sqlx::Error::Database(error),
                    ));
                }
                Ok(Err(error)) => {
                    return Err(database_failure(
                        "cannot connect to the server to create a database",
                        &error,
                    ));
                }
                Err(_) => {
                    return Err(EventStoreError::backend(format!(
                        "cannot connect to the server to create a database: no connection within {timeout:?}"
                    )));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            EventStoreError::backend("cannot connect to the server to create a database")
        }))
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, EventStoreError> {
    PgConnectOptions::from_str(url).map_err(|error| {
        EventStoreError::invalid_input(format!("the PostgreSQL URL is not valid: {error}"))
    })
}

fn validate_database_name(name: &str) -> Result<(), EventStoreError> {
    let mut characters = name.chars();
    let valid_start = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let valid_rest = characters.all(|rest| rest.is_ascii_alphanumeric() || rest == '_');
    if !(valid_start && valid_rest) {
        return Err(EventStoreError::invalid_input(format!(
            "database name {name:?} does not match {DATABASE_NAME_PATTERN}"
        )));
    }
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return Err(EventStoreError::invalid_input(format!(
            "database name {name:?} matches {DATABASE_NAME_PATTERN} but is longer than \
             {MAX_DATABASE_NAME_BYTES} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_the_pattern() {
        for good in ["a", "_", "factstr_test", "A1_b2", &"x".repeat(63)] {
            assert_eq!(validate_database_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "ä",
            "a;drop",
            &"x".repeat(64),
        ] {
            match validate_database_name(bad) {
                Err(EventStoreError::InvalidInput { message }) => {
                    assert!(message.contains(DATABASE_NAME_PATTERN), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_urls_are_invalid_input() {
        assert!(matches!(
            parse_url("postgres://[::1"),
            Err(EventStoreError::InvalidInput { .. })
        ));
    }
}
