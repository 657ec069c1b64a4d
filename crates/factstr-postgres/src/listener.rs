//! Live delivery for commits of every process: LISTEN/NOTIFY, then the new
//! committed batches, published in commit order.
//!
//! Two tasks. The notification task holds a connection that LISTENs on the
//! schema's channel (each append transaction sends `pg_notify` with its last
//! sequence number, delivered at commit) and reports notifications, lost
//! connections and re-established listening. The publisher task is the only
//! caller of `StreamDispatcher::publish`: it publishes the committed batches
//! after the dispatcher's last published sequence number, one batch at a
//! time and in order. It takes a batch this process committed from the
//! writer directly when it is the next one, and reads everything else from
//! the database: after a notification, after listening again (a notification
//! may have been lost while the connection was down), and every
//! [`SAFETY_NET_INTERVAL`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factstr::{EventRecord, EventStoreError};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot};

use crate::error::database_failure;
use crate::log::PostgresLog;

/// How often the publisher looks for commits without being told.
const SAFETY_NET_INTERVAL: Duration = Duration::from_secs(1);
/// Events per read of committed batches.
const READ_PAGE_EVENTS: usize = 4_096;
/// Most events of this process's own commits kept waiting for publication;
/// beyond it they are dropped and read from the database instead.
const MAX_WAITING_EVENTS: usize = 65_536;
const RETRY_DELAY_FIRST: Duration = Duration::from_millis(50);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// What the publisher learns about commits.
#[derive(Debug)]
pub(crate) enum CommitNews {
    /// This process committed this batch.
    Committed(Vec<EventRecord>),
    /// Some process committed a batch ending at this sequence number.
    Notified(u64),
    /// Listening (again): commits may have been missed before.
    Listening,
}

/// Reports notifications on `channel` to the publisher until it is gone.
/// `ready` learns whether the first LISTEN worked; if it did not, the task
/// ends.
pub(crate) async fn listen_for_commits(
    pool: PgPool,
    channel: String,
    news: mpsc::UnboundedSender<CommitNews>,
    connection_epoch: Arc<AtomicU64>,
    ready: oneshot::Sender<Result<(), EventStoreError>>,
) {
    let mut ready = Some(ready);
    let mut delay = RETRY_DELAY_FIRST;
    loop {
        match subscribe(&pool, &channel).await {
            Ok(mut listener) => {
                delay = RETRY_DELAY_FIRST;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                if news.send(CommitNews::Listening).is_err() {
                    return;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if let Ok(last) = notification.payload().parse::<u64>()
                                && news.send(CommitNews::Notified(last)).is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "the connection listening for commits was lost; reconnecting"
                            );
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "listening for commits failed; reconnecting");
                            break;
                        }
                    }
                }
                // Claims of durable streams may have died with the server.
                connection_epoch.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot listen for commits; retrying");
                connection_epoch.fetch_add(1, Ordering::SeqCst);
            }
        }
        if news.is_closed() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_DELAY_MAX);
    }
}

async fn subscribe(pool: &PgPool, channel: &str) -> Result<PgListener, EventStoreError> {
    let failed = |error: sqlx::Error| database_failure("cannot listen for commits", &error);
    let mut listener = PgListener::connect_with(pool).await.map_err(failed)?;
    // Reconnecting is done here, so that every reconnection is followed by
    // reading what was missed.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await.map_err(failed)?;
    Ok(listener)
}

/// Publishes committed batches to the dispatcher, in commit order, until the
/// store closes.
pub(crate) async fn publish_commits(
    log: Arc<PostgresLog>,
    mut news: mpsc::UnboundedReceiver<CommitNews>,
) {
    let mut publisher = Publisher {
        log,
        own_batches: BTreeMap::new(),
        own_events: 0,
        known_committed: 0,
        must_read: true,
    };
    let mut safety_net = tokio::time::interval(SAFETY_NET_INTERVAL);
    safety_net.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delay = RETRY_DELAY_FIRST;
    loop {
        tokio::select! {
            received = news.recv() => match received {
                Some(item) => publisher.learn(item),
                None => return,
            },
            _ = safety_net.tick() => publisher.must_read = true,
        }
        while let Ok(item) = news.try_recv() {
            publisher.learn(item);
        }
        match publisher.publish_available().await {
            Ok(()) => delay = RETRY_DELAY_FIRST,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "reading new commits failed; retrying");
                publisher.must_read = true;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_DELAY_MAX);
            }
        }
    }
}

struct Publisher {
    log: Arc<PostgresLog>,
    /// Batches this process committed, by first sequence number.
    own_batches: BTreeMap<u64, Vec<EventRecord>>,
    own_events: usize,
    /// The greatest sequence number known to be committed.
    known_committed: u64,
    /// Read the database even without news of a commit.
    must_read: bool,
}

impl Publisher {
    fn learn(&mut self, news: CommitNews) {
        match news {
            CommitNews::Committed(batch) => {
                let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                    return;
                };
                let (first, last) = (first.sequence_number, last.sequence_number);
                self.known_committed = self.known_committed.max(last);
                if self.own_events + batch.len() > MAX_WAITING_EVENTS {
                    self.own_batches.clear();
                    self.own_events = 0;
                    self.must_read = true;
                    return;
                }
                self.own_events += batch.len();
                self.own_batches.insert(first, batch);
            }
            CommitNews::Notified(last) => self.known_committed = self.known_committed.max(last),
            CommitNews::Listening => self.must_read = true,
        }
    }

    async fn publish_available(&mut self) -> Result<(), EventStoreError> {
        let log = Arc::clone(&self.log);
        let dispatcher = &log.dispatcher;
        loop {
            let published = dispatcher.last_published();
            self.forget_published(published);
            log.published.send_if_modified(|last| {
                let changed = *last != published;
                *last = published;
                changed
            });
            if let Some(batch) = self.own_batches.remove(&(published + 1)) {
                self.own_events -= batch.len();
                dispatcher.publish(batch);
                continue;
            }
            let behind = self.known_committed > published || !self.own_batches.is_empty();
            if !(self.must_read || behind) {
                return Ok(());
            }
            let page = self
                .log
                .reader
                .committed_batches(published, u64::MAX >> 1, None, READ_PAGE_EVENTS)
                .await?;
            self.must_read = false;
            if page.batches.is_empty() {
                // Everything committed is published.
                self.known_committed = published;
                self.own_batches.clear();
                self.own_events = 0;
                return Ok(());
            }
            for batch in page.batches {
                dispatcher.publish(batch);
            }
        }
    }

    fn forget_published(&mut self, published: u64) {
        let newer = self.own_batches.split_off(&(published + 1));
        let older = std::mem::replace(&mut self.own_batches, newer);
        self.own_events -= older.values().map(Vec::len).sum::<usize>();
    }
}
