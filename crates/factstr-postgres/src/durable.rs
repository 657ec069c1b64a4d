//! Durable streams: the session advisory lock that makes a name exclusive
//! across processes, the stored query, and the cursors.
//!
//! # Claims
//!
//! Opening a durable stream opens a connection of its own and takes
//! `pg_try_advisory_lock` on a key derived from the schema and the name; the
//! connection is held while the stream is active, and closing it releases
//! the lock. If that connection dies (the server restarted, an administrator
//! ended the session), the lock is gone and another process may take the
//! name. So before each handler call the stream's handler wrapper checks the
//! claim: when it was not confirmed within [`CLAIM_CHECK_INTERVAL`], or a
//! connection loss was seen since, it pings the claim's connection; a dead
//! connection is replaced and the lock taken again, retrying while the server
//! is unreachable. If another process holds the lock by then, the handler
//! call fails, which stops the stream and keeps its cursor (the shared
//! dispatcher's rule for failed durable handlers), so two processes never
//! run the same durable stream. The retries end, failing the call the same
//! way, once the stream is asked to stop (the call's `StreamStopSignal`):
//! an unsubscribed stream, or one whose store closes, must not wait for the
//! server to come back before it stops and frees its name.
//!
//! # Cursors
//!
//! `advance` only records the handled position in memory; a background task
//! writes the recorded cursors (monotonic, `GREATEST`) in one statement,
//! every few milliseconds while there is progress, so replay is not bounded
//! by one round trip per batch. A cursor is therefore never written ahead of
//! what was handled; after a crash a stream may get up to the last few
//! milliseconds of batches again. Closing a stream writes its cursor before
//! the lock is released, so the next owner starts from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factstr::backend::sequence::{from_stored, to_stored};
use factstr::backend::sync::lock;
use factstr::backend::{
    Backoff, DurableStreamState, PendingCursors, StreamStopSignal, decode_durable_query,
    encode_durable_query,
};
use factstr::{EventQuery, EventStoreError, HandleStream, StreamHandlerError};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::connect::Connector;
use crate::error::{database_failure, is_connection_lost};
use crate::schema::SchemaNames;

/// How long a confirmed claim is trusted without asking the server again.
const CLAIM_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between cursor writes, so that progress made meanwhile is written
/// together.
const CURSOR_WRITE_PAUSE: Duration = Duration::from_millis(10);

/// The durable streams of one store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct DurableStreams {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    names: Arc<SchemaNames>,
    connector: Connector,
    /// Bumped whenever the store notices a lost connection; claims confirmed
    /// before are checked again.
    connection_epoch: Arc<AtomicU64>,
    claims: Mutex<HashMap<String, Arc<Claim>>>,
    /// Names whose close is under way, and when it finishes.
    closing: Mutex<HashMap<String, watch::Receiver<bool>>>,
    /// Handled positions not yet written.
    pending_cursors: PendingCursors,
    cursors_advanced: tokio::sync::Notify,
    /// Held while cursors are written, so that a stream's cursor is on disk
    /// when `close` returns.
    cursor_writing: tokio::sync::Mutex<()>,
}

/// One active durable stream of this process.
struct Claim {
    key: i64,
    /// The session holding the advisory lock; `None` once it was found dead.
    session: tokio::sync::Mutex<Option<PgConnection>>,
    /// The connection epoch and time of the last confirmation.
    confirmed: Mutex<(u64, Instant)>,
    released: AtomicBool,
}

impl DurableStreams {
    pub(crate) fn new(
        pool: PgPool,
        names: Arc<SchemaNames>,
        connector: Connector,
        connection_epoch: Arc<AtomicU64>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                names,
                connector,
                connection_epoch,
                claims: Mutex::new(HashMap::new()),
                closing: Mutex::new(HashMap::new()),
                pending_cursors: PendingCursors::new(),
                cursors_advanced: tokio::sync::Notify::new(),
                cursor_writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Claims `name` for this process and returns its stored query and
    /// cursor, creating it with `query` and cursor 0 when new.
    pub(crate) async fn open(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        if name.contains('\0') {
            return Err(EventStoreError::invalid_input(format!(
                "durable stream name {name:?} contains a NUL character, which PostgreSQL cannot store"
            )));
        }
        let inner = &self.inner;
        // A close of this name in this store still under way holds the lock.
        let closing = lock(&inner.closing).get(name).cloned();
        if let Some(mut closing) = closing {
            let _ = closing.wait_for(|finished| *finished).await;
        }
        let key = inner.names.durable_lock_key(name);
        let mut session = inner
            .connector
            .connect(&format!("claim durable stream `{name}`"))
            .await?;
        let failed = |error: sqlx::Error| {
            database_failure(&format!("cannot open durable stream `{name}`"), &error)
        };
        let claimed: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut session)
            .await
            .map_err(failed)?;
        if !claimed {
            close_session(session).await;
            return Err(EventStoreError::backend(format!(
                "durable stream `{name}` is already active in another process"
            )));
        }
        let state = match self.read_or_create(&mut session, name, query).await {
            Ok(state) => state,
            Err(error) => {
                // Released at once, so that the name can be opened again.
                release(session, key, name).await;
                return Err(error);
            }
        };
        let claim = Arc::new(Claim {
            key,
            session: tokio::sync::Mutex::new(Some(session)),
            confirmed: Mutex::new((inner.current_epoch(), Instant::now())),
            released: AtomicBool::new(false),
        });
        lock(&inner.claims).insert(name.to_owned(), claim);
        Ok(state)
    }

    /// The stored query and cursor of `name`, stored first with `query` and
    /// cursor 0 when new, on the claim's `session`.
    async fn read_or_create(
        &self,
        session: &mut PgConnection,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        let inner = &self.inner;
        let query_json = encode_durable_query(name, query)?;
        let sql = format!(
            "WITH created AS (INSERT INTO {table} (name, query, cursor) VALUES ($1, $2, 0) \
                              ON CONFLICT (name) DO NOTHING RETURNING query, cursor) \
             SELECT query, cursor FROM created \
             UNION ALL SELECT query, cursor FROM {table} WHERE name = $1",
            table = inner.names.durable_streams()
        );
        // The handled position is the stored cursor or, greater, one this
        // process recorded and did not write yet. A cursor write under way
        // has taken its cursors out of the record and not stored them yet:
        // reading both while no write runs finds the position in one of them.
        let writing = inner.cursor_writing.lock().await;
        let stored: Result<(String, i64), sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(&query_json)
            .fetch_one(&mut *session)
            .await;
        let pending = inner.pending_cursors.get(name).unwrap_or(0);
        drop(writing);
        let (stored_query, stored_cursor) = stored.map_err(|error| {
            database_failure(&format!("cannot open durable stream `{name}`"), &error)
        })?;
        let what = format!("cursor of durable stream `{name}`");
        Ok(DurableStreamState {
            query: decode_durable_query(name, &stored_query)?,
            cursor: from_stored(stored_cursor, &what)?.max(pending),
        })
    }

    /// Records that the stream `name` handled everything it needs up to
    /// `cursor`; written shortly after by the cursor task.
    pub(crate) fn advance(&self, name: &str, cursor: u64) {
        self.inner.pending_cursors.record(name, cursor);
        self.inner.cursors_advanced.notify_one();
    }

    /// Starts releasing the claim of `name` and returns at once: the
    /// stream's cursor is written, then its lock released, on `runtime`.
    /// Opening the name again in this store waits for that to finish; the
    /// returned receiver turns `true` then (or closes, should the store's
    /// runtime end first).
    pub(crate) fn begin_close(&self, runtime: &Handle, name: &str) -> watch::Receiver<bool> {
        let (finished, closing) = watch::channel(false);
        lock(&self.inner.closing).insert(name.to_owned(), closing.clone());
        let durable = self.clone();
        let name = name.to_owned();
        drop(runtime.spawn(async move {
            durable.close(&name).await;
            let _ = finished.send(true);
            let mut closing = lock(&durable.inner.closing);
            if closing
                .get(&name)
                .is_some_and(|receiver| receiver.same_channel(&finished.subscribe()))
            {
                closing.remove(&name);
            }
        }));
        closing
    }

    /// Waits until every close begun so far has finished, then writes every
    /// recorded cursor: what closing the store does once its streams ended.
    pub(crate) async fn close_all(&self) -> Result<(), EventStoreError> {
        self.closed().await;
        self.write_all_cursors().await
    }

    /// Waits until every close begun so far has finished.
    async fn closed(&self) {
        let pending: Vec<watch::Receiver<bool>> =
            lock(&self.inner.closing).values().cloned().collect();
        for mut closing in pending {
            let _ = closing.wait_for(|finished| *finished).await;
        }
    }

    /// Writes the stream's cursor, then releases its lock.
    async fn close(&self, name: &str) {
        let claim = lock(&self.inner.claims).remove(name);
        if let Err(error) = self.write_cursor_of(name).await {
            tracing::warn!(durable_stream = name, %error, "could not store the durable cursor at close");
        }
        let Some(claim) = claim else {
            return;
        };
        claim.released.store(true, Ordering::SeqCst);
        let Some(session) = claim.session.lock().await.take() else {
            return;
        };
        release(session, claim.key, name).await;
    }

    /// Wraps the handler of durable stream `name` so that each call first
    /// makes sure this process still holds the stream's lock (see
    /// "Claims" above), confirming on `runtime`.
    pub(crate) fn checked_handler(
        &self,
        runtime: &Handle,
        name: &str,
        handle: HandleStream,
    ) -> HandleStream {
        let durable = self.clone();
        let runtime = runtime.clone();
        let name: Arc<str> = name.into();
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

    /// Whether the claim of `name` was confirmed recently enough to deliver
    /// without asking the server.
    fn is_confirmed(&self, name: &str) -> bool {
        let claim = lock(&self.inner.claims).get(name).cloned();
        claim.is_some_and(|claim| claim.is_fresh(self.inner.current_epoch()))
    }

    /// Makes sure this process still holds the lock of `name`: pings the
    /// claim's session and, when it died, takes the lock again on a new one
    /// (waiting for the server while it is unreachable). Fails when another
    /// process holds the lock, when the stream was closed, and when an
    /// attempt failed after the stream was asked to stop (`stop`): a stopping
    /// stream does not wait for the server, so it stops, and frees its name,
    /// during an outage.
    async fn confirm(&self, name: &str, stop: Option<StreamStopSignal>) -> Result<(), String> {
        let inner = &self.inner;
        let Some(claim) = lock(&inner.claims).get(name).cloned() else {
            return Err(format!("durable stream `{name}` is not open in this store"));
        };
        let mut session = claim.session.lock().await;
        let epoch = inner.current_epoch();
        if claim.is_fresh(epoch) {
            return Ok(());
        }
        if let Some(connection) = session.as_mut() {
            let ping = tokio::time::timeout(inner.connector.timeout(), connection.ping()).await;
            if let Ok(Ok(())) = ping {
                claim.confirm(epoch);
                return Ok(());
            }
            tracing::warn!(
                durable_stream = name,
                "the session holding a durable stream's lock was lost; taking the lock again"
            );
        }
        *session = None;
        let mut backoff = Backoff::new();
        loop {
            if claim.released.load(Ordering::SeqCst) {
                return Err(format!("durable stream `{name}` was closed"));
            }
            let epoch = inner.current_epoch();
            match inner
                .connector
                .connect(&format!("claim durable stream `{name}` again"))
                .await
            {
                Ok(mut connection) => {
                    let claimed: Result<bool, sqlx::Error> =
                        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                            .bind(claim.key)
                            .fetch_one(&mut connection)
                            .await;
                    match claimed {
                        Ok(true) => {
                            *session = Some(connection);
                            claim.confirm(epoch);
                            tracing::info!(
                                durable_stream = name,
                                "durable stream lock taken again"
                            );
                            return Ok(());
                        }
                        Ok(false) => {
                            close_session(connection).await;
                            return Err(format!(
                                "durable stream `{name}` lost its lock when its connection was lost, \
                                 and another process holds it now; the stream stops here"
                            ));
                        }
                        Err(error) => {
                            tracing::warn!(durable_stream = name, %error, "taking a durable stream's lock again failed; retrying");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(durable_stream = name, %error, "cannot reach PostgreSQL to take a durable stream's lock again; retrying");
                }
            }
            if stop.as_ref().is_some_and(StreamStopSignal::is_requested) {
                return Err(format!(
                    "durable stream `{name}` was asked to stop while PostgreSQL was unreachable, \
                     before its lock could be confirmed; it stops before this batch, which \
                     registering the name again delivers"
                ));
            }
            let delay = backoff.next_delay();
            match &stop {
                // The next round sees the stop request and gives up.
                Some(stop) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.requested() => {}
                },
                None => tokio::time::sleep(delay).await,
            }
        }
    }

    /// Writes recorded cursors until the store closes; runs as a task.
    pub(crate) async fn write_cursors(self) {
        loop {
            self.inner.cursors_advanced.notified().await;
            let mut backoff = Backoff::new();
            while let Err(error) = self.write_all_cursors().await {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "writing durable cursors failed; retrying");
                tokio::time::sleep(delay).await;
            }
            tokio::time::sleep(CURSOR_WRITE_PAUSE).await;
        }
    }

    /// Writes every recorded cursor now.
    async fn write_all_cursors(&self) -> Result<(), EventStoreError> {
        let _writing = self.inner.cursor_writing.lock().await;
        let cursors = self.inner.pending_cursors.take();
        self.write(cursors).await
    }

    async fn write_cursor_of(&self, name: &str) -> Result<(), EventStoreError> {
        let _writing = self.inner.cursor_writing.lock().await;
        let cursor = self.inner.pending_cursors.take_one(name);
        match cursor {
            Some(cursor) => self.write(HashMap::from([(name.to_owned(), cursor)])).await,
            None => Ok(()),
        }
    }

    /// Writes `cursors`; on failure they are recorded again (keeping any
    /// greater position recorded meanwhile).
    async fn write(&self, cursors: HashMap<String, u64>) -> Result<(), EventStoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = cursors.keys().map(String::as_str).collect();
        let positions: Vec<i64> = cursors.values().map(|&cursor| to_stored(cursor)).collect();
        let sql = format!(
            "UPDATE {table} AS stream SET cursor = GREATEST(stream.cursor, written.cursor) \
             FROM UNNEST($1::text[], $2::bigint[]) AS written(name, cursor) \
             WHERE stream.name = written.name",
            table = self.inner.names.durable_streams()
        );
        // A pooled connection may have died while idle (the server
        // restarted); the write is repeated on another one.
        let attempts = self.inner.pool.options().get_max_connections() + 1;
        let mut written = Ok(());
        for _ in 0..attempts {
            written = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&names)
                .bind(&positions)
                .execute(&self.inner.pool)
                .await
                .map(|_| ());
            match &written {
                Err(error) if is_connection_lost(error) => continue,
                _ => break,
            }
        }
        if let Err(error) = written {
            self.inner.pending_cursors.restore(cursors);
            return Err(database_failure("writing durable cursors failed", &error));
        }
        Ok(())
    }
}

impl Inner {
    fn current_epoch(&self) -> u64 {
        self.connection_epoch.load(Ordering::SeqCst)
    }
}

impl Claim {
    fn is_fresh(&self, epoch: u64) -> bool {
        let (confirmed_epoch, confirmed_at) = *lock(&self.confirmed);
        !self.released.load(Ordering::SeqCst)
            && confirmed_epoch == epoch
            && confirmed_at.elapsed() < CLAIM_CHECK_INTERVAL
    }

    fn confirm(&self, epoch: u64) {
        *lock(&self.confirmed) = (epoch, Instant::now());
    }
}

/// Releases the lock `key` of durable stream `name` and ends its session.
async fn release(mut session: PgConnection, key: i64, name: &str) {
    // Unlock explicitly: ending the session releases the lock too, but
    // only once the server has processed the disconnection.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut session)
        .await;
    if let Err(error) = unlocked {
        tracing::warn!(durable_stream = name, %error, "could not unlock a durable stream; closing its session");
    }
    close_session(session).await;
}

/// Ends a claim's session, which releases its advisory lock.
async fn close_session(session: PgConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
}
