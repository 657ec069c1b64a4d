//! The read connections (idle ones are kept for the next query or stream
//! read), and the threads that run reads for the async API.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use factstr::EventStoreError;
use factstr::backend::sync::lock;
use futures::channel::oneshot;
use rusqlite::Connection;

use crate::error::SqliteResultExt;
use crate::options::SqliteStoreOptions;
use crate::{schema, sql};

/// Idle read connections, reused across queries and stream reads.
pub(crate) struct ReaderPool {
    path: PathBuf,
    options: SqliteStoreOptions,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    /// No connections yet, to the database at `path`.
    pub(crate) fn new(path: &Path, options: &SqliteStoreOptions) -> Self {
        Self {
            path: path.to_path_buf(),
            options: options.clone(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` inside one read transaction, so everything it reads comes
    /// from one snapshot.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let idle = lock(&self.idle).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => schema::open_reader_connection(&self.path, &self.options)?,
        };
        connection
            .prepare_cached(sql::BEGIN_READ)
            .and_then(|mut statement| statement.execute([]))
            .or_failed("starting a read transaction")?;
        let outcome = read(&connection);
        let ended = connection
            .prepare_cached(sql::COMMIT)
            .and_then(|mut statement| statement.execute([]))
            .or_failed("ending a read transaction");
        match ended {
            Ok(_) if connection.is_autocommit() => {
                let mut idle = lock(&self.idle);
                if idle.len() < self.options.idle_readers {
                    idle.push(connection);
                }
            }
            // A connection left inside a transaction is dropped, which
            // rolls it back.
            _ => {}
        }
        let value = outcome?;
        ended?;
        Ok(value)
    }
}

/// Work for a read thread; it answers its caller itself.
type ReadJob = Box<dyn FnOnce() + Send>;

/// A few threads that run reads for the async API, so that awaiting a query
/// never holds a runtime worker on SQLite (and needs no particular
/// runtime: the answer comes back through a oneshot channel). Started on
/// the first async read, stopped (after the reads already handed over) when
/// the store closes.
pub(crate) struct ReadThreads {
    state: Mutex<ReadThreadsState>,
}

#[derive(Default)]
struct ReadThreadsState {
    /// `None` before the first read and after closing.
    jobs: Option<mpsc::Sender<ReadJob>>,
    threads: Vec<JoinHandle<()>>,
    closed: bool,
}

impl ReadThreads {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(ReadThreadsState::default()),
        }
    }

    /// Runs `read` on a read thread; the future completes with its outcome.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, EventStoreError> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        let (reply, answer) = oneshot::channel();
        self.hand_over(Box::new(move || {
            // A caller that stopped waiting is no reason to fail.
            let _ = reply.send(read());
        }))?;
        answer.await.map_err(|_| {
            EventStoreError::backend("the SQLite read thread stopped before answering")
        })?
    }

    fn hand_over(&self, job: ReadJob) -> Result<(), EventStoreError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(EventStoreError::backend("the store is closed"));
        }
        if state.jobs.is_none() {
            state.start()?;
        }
        let sent = state.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(EventStoreError::backend("the SQLite read threads stopped")),
        }
    }

    /// Lets the threads finish the reads handed over and waits for them.
    pub(crate) fn close(&self) {
        let threads = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.jobs = None;
            std::mem::take(&mut state.threads)
        };
        let current = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != current && thread.join().is_err() {
                tracing::error!("a SQLite read thread panicked");
            }
        }
    }
}

impl ReadThreadsState {
    fn start(&mut self) -> Result<(), EventStoreError> {
        let (sender, receiver) = mpsc::channel::<ReadJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        let count = std::thread::available_parallelism()
            .map_or(MIN_READ_THREADS, usize::from)
            .clamp(MIN_READ_THREADS, MAX_READ_THREADS);
        for index in 0..count {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("factstr-sqlite-reader-{index}"))
                .spawn(move || {
                    loop {
                        // Held only while waiting, so the next idle thread
                        // takes the next job.
                        let job = lock(&receiver).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            match spawned {
                Ok(thread) => self.threads.push(thread),
                Err(error) if self.threads.is_empty() => {
                    return Err(EventStoreError::backend(format!(
                        "cannot start a SQLite read thread: {error}"
                    )));
                }
                Err(error) => {
                    tracing::warn!(%error, "started fewer SQLite read threads than wanted");
                    break;
                }
            }
        }
        self.jobs = Some(sender);
        Ok(())
    }
}

/// Bounds of the number of read threads (the machine's parallelism within
/// them): reads are short, and each thread keeps a connection open.
const MIN_READ_THREADS: usize = 2;
const MAX_READ_THREADS: usize = 4;
