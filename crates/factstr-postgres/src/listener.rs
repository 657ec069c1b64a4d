//! Live delivery for commits of every process: LISTEN/NOTIFY, then the new
//! committed batches, published in commit order.
//!
//! Two tasks. The notification task holds a connection that LISTENs on the
//! schema's channel (each append transaction sends `pg_notify` with its last
//! sequence number, delivered at commit) and reports notifications, lost
//! connections and re-established listening. The publisher task publishes
//! the committed batches after the dispatcher's last published sequence
//! number, read from the database, one batch at a time and in order: after
//! a notification, after listening again (a notification may have been lost
//! while the connection was down), and every [`SAFETY_NET_INTERVAL`]. This
//! process's own batches are published by its writer right after their
//! commit; the dispatcher ignores a batch published twice and sends streams
//! through storage when batches arrive out of order.
//!
//! The news the tasks exchange is bounded whatever the commit rate: the
//! greatest sequence number known to be committed and a count of
//! re-established listenings, in one `watch` value, never a queue of
//! batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factstr::EventStoreError;
use factstr::backend::Backoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{oneshot, watch};

use crate::error::database_failure;
use crate::log::PostgresLog;

/// How often the publisher looks for commits without being told.
const SAFETY_NET_INTERVAL: Duration = Duration::from_secs(1);
/// Events per read of committed batches.
const READ_PAGE_EVENTS: usize = 4_096;

/// What the publisher knows about commits it has not seen yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommitNews {
    /// The greatest sequence number some process is known to have committed.
    pub(crate) known_committed: u64,
    /// How often listening (re)started; each time, commits may have been
    /// missed before.
    pub(crate) listenings: u64,
}

/// Where commit news is sent.
pub(crate) type NewsSender = watch::Sender<CommitNews>;

/// Records that some process committed up to `last`.
pub(crate) fn tell_committed(news: &NewsSender, last: u64) {
    news.send_if_modified(|news| {
        let newer = last > news.known_committed;
        news.known_committed = news.known_committed.max(last);
        newer
    });
}

/// Reports notifications on `channel` to the publisher until it is gone.
/// `ready` learns whether the first LISTEN worked; if it did not, the task
/// ends.
pub(crate) async fn listen_for_commits(
    pool: PgPool,
    channel: String,
    news: NewsSender,
    connection_epoch: Arc<AtomicU64>,
    ready: oneshot::Sender<Result<(), EventStoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Backoff::new();
    loop {
        match subscribe(&pool, &channel).await {
            Ok(mut listener) => {
                backoff.reset();
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                news.send_modify(|news| news.listenings += 1);
                if news.is_closed() {
                    return;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if let Ok(last) = notification.payload().parse::<u64>() {
                                tell_committed(&news, last);
                            }
                            if news.is_closed() {
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
                tracing::warn!(%error, "cannot listen for commits; retrying");
                connection_epoch.fetch_add(1, Ordering::SeqCst);
            }
        }
        if news.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.next_delay()).await;
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
pub(crate) async fn publish_commits(log: Arc<PostgresLog>, mut news: watch::Receiver<CommitNews>) {
    let mut publisher = Publisher {
        log,
        known_committed: 0,
        listenings: 0,
        must_read: true,
    };
    let mut safety_net = tokio::time::interval(SAFETY_NET_INTERVAL);
    safety_net.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new();
    loop {
        tokio::select! {
            changed = news.changed() => if changed.is_err() {
                return;
            },
            _ = safety_net.tick() => publisher.must_read = true,
        }
        publisher.learn(*news.borrow_and_update());
        match publisher.publish_available().await {
            Ok(()) => backoff.reset(),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "reading new commits failed; retrying");
                publisher.must_read = true;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

struct Publisher {
    log: Arc<PostgresLog>,
    /// The greatest sequence number known to be committed.
    known_committed: u64,
    /// Listenings seen so far.
    listenings: u64,
    /// Read the database even without news of a commit.
    must_read: bool,
}

impl Publisher {
    fn learn(&mut self, news: CommitNews) {
        self.known_committed = self.known_committed.max(news.known_committed);
        if news.listenings != self.listenings {
            self.listenings = news.listenings;
            self.must_read = true;
        }
    }

    async fn publish_available(&mut self) -> Result<(), EventStoreError> {
        let log = Arc::clone(&self.log);
        loop {
            let published = log.last_published();
            log.tell_published(published);
            if !(self.must_read || self.known_committed > published) {
                return Ok(());
            }
            let page = log
                .reader
                .committed_batches(published, u64::MAX >> 1, None, READ_PAGE_EVENTS)
                .await?;
            self.must_read = false;
            if page.batches.is_empty() {
                // Everything committed is published.
                self.known_committed = published;
                return Ok(());
            }
            for batch in page.batches {
                log.publish(batch);
            }
        }
    }
}
