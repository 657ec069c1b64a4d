//! Appends: one writer task per store commits the appends waiting at the
//! same moment in one transaction (group commit).
//!
//! The store hands each append to the task through [`Appends`] and waits for
//! its reply. The task takes every append waiting when it is free as one
//! group (up to [`MAX_GROUP_EVENTS`]), commits it ([`transaction`]), hands
//! each committed batch to the streams and then answers. Each request
//! succeeds or fails on its own: a group whose rows the database refuses is
//! committed again request by request, and a group whose connection turned
//! out dead before anything was committed is tried once more on a new one.
//!
//! A lone plain append, when the writer's last commit on its connection was
//! its own, first tries one statement ([`transaction::append_alone`]) and
//! goes through the transaction only when that commits nothing.

mod snapshot;
mod transaction;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use factstr::backend::{Condition, StreamDispatcher, committed_batch};
use factstr::{AppendResult, EventStoreError};
use sqlx::{PgConnection, PgPool};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use self::transaction::{Append, Decision, Failure, Insertion, KnownHead, LoneOutcome};
use crate::bridge::StoreWork;
use crate::connect::Connector;
use crate::error::{database_failure, is_connection_lost};
use crate::rows::PreparedBatch;
use crate::schema::SchemaNames;

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 10_000;
/// The log length from which the writer refreshes planner statistics.
const ANALYZE_FROM_EVENTS: u64 = 100;

/// Where the store hands appends to its writer task.
pub(crate) struct Appends {
    requests: mpsc::UnboundedSender<AppendRequest>,
}

impl Appends {
    /// Hands `batch` (appended if `condition` holds) to the writer now; the
    /// returned future completes with the result.
    pub(crate) fn submit(
        &self,
        batch: PreparedBatch,
        condition: Option<Condition>,
    ) -> StoreWork<AppendResult> {
        let (reply, result) = oneshot::channel();
        let request = AppendRequest {
            append: Append::new(batch, condition),
            reply,
        };
        if self.requests.send(request).is_err() {
            return Box::pin(std::future::ready(Err(EventStoreError::backend(
                "the store's writer has stopped",
            ))));
        }
        Box::pin(async move {
            result.await.unwrap_or_else(|_| {
                Err(EventStoreError::backend(
                    "the store's writer stopped before the append finished",
                ))
            })
        })
    }
}

/// Where the result of an append goes.
type Reply = oneshot::Sender<Result<AppendResult, EventStoreError>>;

/// An append waiting for the writer, and where its result goes.
struct AppendRequest {
    append: Append,
    reply: Reply,
}

/// The writer task's state.
pub(crate) struct Writer {
    connector: Connector,
    names: Arc<SchemaNames>,
    connection: Option<PgConnection>,
    /// Where committed batches are published.
    dispatcher: Arc<StreamDispatcher>,
    pool: PgPool,
    /// The log's length when this writer last refreshed the planner's
    /// statistics.
    analyzed_through: u64,
    /// Bumped whenever the store notices a lost connection.
    connection_epoch: Arc<AtomicU64>,
    /// The log's head after this writer's last commit on its connection,
    /// with the connection epoch then: a lone append may take the
    /// one-statement path while both still hold.
    known_head: Option<(KnownHead, u64)>,
}

impl Writer {
    /// A writer appending with connections from `connector` to the tables
    /// of `names`, publishing to `dispatcher`; `pool` runs its `ANALYZE`.
    pub(crate) fn new(
        connector: Connector,
        names: Arc<SchemaNames>,
        dispatcher: Arc<StreamDispatcher>,
        pool: PgPool,
        connection_epoch: Arc<AtomicU64>,
    ) -> Self {
        Self {
            connector,
            names,
            connection: None,
            dispatcher,
            pool,
            analyzed_through: 0,
            connection_epoch,
            known_head: None,
        }
    }

    /// Starts the writer task on `runtime`; it runs until every [`Appends`]
    /// is dropped.
    pub(crate) fn start(self, runtime: &Handle) -> Appends {
        let (requests, received) = mpsc::unbounded_channel();
        runtime.spawn(self.run(received));
        Appends { requests }
    }

    /// Commits requests until the store closes.
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<AppendRequest>) {
        while let Some(first) = requests.recv().await {
            let mut events = first.append.len();
            let mut group = vec![first.append];
            let mut replies = vec![first.reply];
            while events < MAX_GROUP_EVENTS {
                match requests.try_recv() {
                    Ok(request) => {
                        events += request.append.len();
                        group.push(request.append);
                        replies.push(request.reply);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, replies).await;
        }
    }

    async fn commit_group(&mut self, group: Vec<Append>, replies: Vec<Reply>) {
        let mut outcome = match self.try_alone(&group).await {
            Some(Ok(committed)) => Ok(committed),
            Some(Err(error)) => {
                self.connection = None;
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            None => self.try_commit(&group, Insertion::Together).await,
        };
        if let Err(Failure::BeforeCommit(_, true)) = outcome {
            // The connection died before anything was committed (the server
            // restarted since the last append): once more on a new one.
            self.connection = None;
            outcome = self.try_commit(&group, Insertion::Together).await;
        }
        if let Err(Failure::RowsRefused) = outcome {
            outcome = self.try_commit(&group, Insertion::EachOnItsOwn).await;
        }
        let (occurred_at, decisions) = match outcome {
            Ok(decided) => decided,
            Err(failure) => {
                let error = match failure {
                    Failure::BeforeCommit(error, _) | Failure::AtCommit(error) => error,
                    // Only `Together` reports it, and that was retried above.
                    Failure::RowsRefused => EventStoreError::backend(
                        "PostgreSQL refused the events of a group of appends",
                    ),
                };
                // The connection's state is unknown: use a new one next time.
                self.connection = None;
                self.known_head = None;
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
        };
        self.known_head = None;
        if let Some(Decision::Accepted { last, .. }) = decisions
            .iter()
            .rev()
            .find(|decision| matches!(decision, Decision::Accepted { .. }))
        {
            let head = KnownHead {
                last: *last,
                occurred_at,
            };
            self.known_head = Some((head, self.connection_epoch.load(Ordering::SeqCst)));
            self.refresh_statistics(*last);
        }
        for ((append, reply), decision) in group.into_iter().zip(replies).zip(decisions) {
            let result = match decision {
                Decision::Rejected(error) => Err(error),
                Decision::Accepted { first, .. } => {
                    let (result, records) =
                        committed_batch(append.into_events(), first, occurred_at);
                    // Before the caller hears of it, so that a stream
                    // unsubscribed or a store closed after `append`
                    // returned still delivers this batch.
                    self.dispatcher.publish(records);
                    Ok(result)
                }
            };
            let _ = reply.send(result);
        }
    }

    /// Commits a lone plain append in one statement when the writer knows
    /// the log's head: nothing else was committed since its own last commit
    /// as far as this process can tell, and no connection was lost since.
    /// `None` when the group does not qualify or the statement committed
    /// nothing (the head moved, the database refused it): the transaction
    /// decides then. An error when the outcome is unknown.
    async fn try_alone(
        &mut self,
        group: &[Append],
    ) -> Option<Result<(DateTime<Utc>, Vec<Decision>), EventStoreError>> {
        let [append] = group else {
            return None;
        };
        let (head, epoch) = self.known_head.take()?;
        let connection = self.connection.as_mut()?;
        // Another process's commit, published here since, or a connection
        // lost somewhere (the server may have restarted under this one).
        if append.condition().is_some()
            || self.dispatcher.last_published() > head.last
            || self.connection_epoch.load(Ordering::SeqCst) != epoch
        {
            return None;
        }
        match transaction::append_alone(connection, &self.names, append, head).await {
            LoneOutcome::Committed {
                occurred_at,
                first,
                last,
            } => Some(Ok((occurred_at, vec![Decision::Accepted { first, last }]))),
            LoneOutcome::NotApplied => None,
            LoneOutcome::Unknown(error) => Some(Err(error)),
        }
    }

    /// Commits `group` on the writer's connection, opening one if it has
    /// none.
    async fn try_commit(
        &mut self,
        group: &[Append],
        insertion: Insertion,
    ) -> Result<(DateTime<Utc>, Vec<Decision>), Failure> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty => {
                let mut connection = self
                    .connector
                    .connect("append")
                    .await
                    .map_err(|error| Failure::BeforeCommit(error, false))?;
                // The lone append's statement plans the same whatever it
                // binds, and planning it costs more than running it: plan it
                // once per session. The transaction plans per execution.
                sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
                    .execute(&mut connection)
                    .await
                    .map_err(|error| {
                        Failure::BeforeCommit(
                            database_failure("cannot prepare the connection to append", &error),
                            is_connection_lost(&error),
                        )
                    })?;
                empty.insert(connection)
            }
        };
        transaction::commit(connection, &self.names, group, insertion).await
    }

    /// Runs `ANALYZE` on the events table in the background whenever the
    /// log has doubled since the last time (from 100 events on).
    ///
    /// Whether a context is answered by walking the log backwards or through
    /// the GIN index depends on how common its events are; the planner needs
    /// statistics to choose, and autovacuum refreshes them at most once a
    /// minute, which a young, fast-growing log outruns.
    fn refresh_statistics(&mut self, last_committed: u64) {
        if last_committed < ANALYZE_FROM_EVENTS || last_committed < 2 * self.analyzed_through {
            return;
        }
        self.analyzed_through = last_committed;
        let pool = self.pool.clone();
        let sql = format!("ANALYZE {}", self.names.events());
        tokio::spawn(async move {
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                tracing::debug!(%error, "refreshing the planner statistics of the events table failed");
            }
        });
    }
}
