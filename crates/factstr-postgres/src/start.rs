//! Starting a store: its runtime, the connections, the schema, and the
//! tasks that append, listen for commits, publish them and write cursors.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use factstr::EventStoreError;
use factstr::backend::StreamDispatcher;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{oneshot, watch};

use crate::bridge::run_on;
use crate::committed_log::PostgresLog;
use crate::connect::{Connector, DatabaseToCreate, session_options};
use crate::durable::DurableStreams;
use crate::error::database_failure;
use crate::listen::listen_for_commits;
use crate::news::CommitNews;
use crate::options::PostgresStoreOptions;
use crate::prepare::prepare;
use crate::publish::Publication;
use crate::read::Reader;
use crate::schema::SchemaNames;
use crate::writer::{Appends, Writer};

/// Worker threads of each store's runtime.
const RUNTIME_THREADS: usize = 2;

/// Starts a store on the database `connect_options` names, creating it
/// first when `database_to_create` says so.
pub(crate) fn start(
    connect_options: PgConnectOptions,
    options: PostgresStoreOptions,
    database_to_create: Option<DatabaseToCreate>,
) -> Result<(Runtime, Parts), EventStoreError> {
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
            start_tasks(handle, connect_options, &options).await
        }
    });
    match started {
        Ok(parts) => Ok((runtime, parts)),
        Err(error) => {
            runtime.shutdown_background();
            Err(error)
        }
    }
}

/// The parts of a started store, which run on its runtime.
pub(crate) struct Parts {
    pub(crate) names: Arc<SchemaNames>,
    pub(crate) reader: Reader,
    pub(crate) dispatcher: Arc<StreamDispatcher>,
    pub(crate) log: Arc<PostgresLog>,
    pub(crate) durable: DurableStreams,
    pub(crate) publication: Publication,
    pub(crate) appends: Appends,
}

/// Connects, prepares the schema and starts the store's tasks.
async fn start_tasks(
    handle: Handle,
    connect_options: PgConnectOptions,
    options: &PostgresStoreOptions,
) -> Result<Parts, EventStoreError> {
    let connect_options = session_options(connect_options, options);
    let connector = Connector::new(connect_options.clone(), options.connect_timeout);
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
        Arc::new(prepare(&mut connection).await?)
    };
    let reader = Reader::new(pool.clone(), Arc::clone(&names));
    let head = reader.head().await?;
    let connection_epoch = Arc::new(AtomicU64::new(0));
    let durable = DurableStreams::new(
        pool.clone(),
        Arc::clone(&names),
        connector.clone(),
        Arc::clone(&connection_epoch),
    );
    let dispatcher = Arc::new(StreamDispatcher::new(head));
    let (news, news_received) = watch::channel(CommitNews::default());
    let publication = Publication::new(
        reader.clone(),
        Arc::clone(&dispatcher),
        news.clone(),
        options.connect_timeout,
    );
    let log = Arc::new(PostgresLog::new(
        handle.clone(),
        reader.clone(),
        durable.clone(),
    ));

    handle.spawn(publication.clone().run(news_received));
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.connect_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(connect_options);
    let (ready, listening) = oneshot::channel();
    handle.spawn(listen_for_commits(
        listener_pool,
        names.channel().to_owned(),
        news,
        Arc::clone(&connection_epoch),
        ready,
    ));
    listening.await.unwrap_or_else(|_| {
        Err(EventStoreError::backend(
            "the task listening for commits stopped",
        ))
    })?;
    handle.spawn(durable.clone().write_cursors());
    let appends = Writer::new(
        connector,
        Arc::clone(&names),
        Arc::clone(&dispatcher),
        pool,
        connection_epoch,
    )
    .start(&handle);
    Ok(Parts {
        names,
        reader,
        dispatcher,
        log,
        durable,
        publication,
        appends,
    })
}
