//! The publisher task: publishes the batches other processes committed, in
//! commit order, and lets registrations wait until everything committed
//! before them is published.
//!
//! It publishes the committed batches after the dispatcher's last published
//! sequence number, read from the database, one batch at a time and in
//! order: after a notification, after listening again (a notification may
//! have been lost while the connection was down), and every
//! [`SAFETY_NET_INTERVAL`]. This process's own batches are published by its
//! writer right after their commit; the dispatcher ignores a batch
//! published twice and sends streams through storage when batches arrive
//! out of order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use factstr::EventStoreError;
use factstr::backend::{Backoff, StreamDispatcher};
use tokio::sync::watch;

use crate::news::{CommitNews, NewsSender, tell_committed};
use crate::read::Reader;

/// How often the publisher looks for commits without being told.
const SAFETY_NET_INTERVAL: Duration = Duration::from_secs(1);
/// Events per read of committed batches.
const READ_PAGE_EVENTS: usize = 4_096;

/// Publication to the store's streams: what the publisher task runs and
/// registrations wait for. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Publication {
    reader: Reader,
    dispatcher: Arc<StreamDispatcher>,
    /// Tells the publisher about commits.
    news: NewsSender,
    /// The last sequence number the publisher saw published.
    published: watch::Sender<u64>,
    /// How long a registration waits for the publisher.
    timeout: Duration,
}

impl Publication {
    pub(crate) fn new(
        reader: Reader,
        dispatcher: Arc<StreamDispatcher>,
        news: NewsSender,
        timeout: Duration,
    ) -> Self {
        let published = watch::Sender::new(dispatcher.last_published());
        Self {
            reader,
            dispatcher,
            news,
            published,
            timeout,
        }
    }

    /// Publishes every batch committed before now, so that a stream
    /// registered next starts after them: a live stream never receives
    /// history (batches whose `append` already returned but whose
    /// publication is still under way included), and a durable stream's
    /// replay covers them before registration returns.
    pub(crate) fn catch_up(
        &self,
    ) -> impl Future<Output = Result<(), EventStoreError>> + Send + 'static {
        let reader = self.reader.clone();
        let news = self.news.clone();
        let mut published = self.published.subscribe();
        let timeout = self.timeout;
        let already = self.dispatcher.last_published();
        async move {
            let head = reader.head().await?;
            if already >= head || *published.borrow() >= head {
                return Ok(());
            }
            tell_committed(&news, head);
            match tokio::time::timeout(timeout, published.wait_for(|&last| last >= head)).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(EventStoreError::backend(format!(
                    "committed batches up to {head} were not published within {timeout:?}"
                ))),
            }
        }
    }

    /// Publishes committed batches to the dispatcher, in commit order, as
    /// `news` tells, until the store closes; runs as a task.
    pub(crate) async fn run(self, mut news: watch::Receiver<CommitNews>) {
        let mut progress = Progress {
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
                _ = safety_net.tick() => progress.must_read = true,
            }
            progress.learn(*news.borrow_and_update());
            match self.publish_available(&mut progress).await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "reading new commits failed; retrying");
                    progress.must_read = true;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Publishes what `progress` says may be unpublished.
    async fn publish_available(&self, progress: &mut Progress) -> Result<(), EventStoreError> {
        loop {
            let published = self.dispatcher.last_published();
            self.tell_published(published);
            if !(progress.must_read || progress.known_committed > published) {
                return Ok(());
            }
            let page = self
                .reader
                .committed_batches(published, u64::MAX >> 1, None, READ_PAGE_EVENTS)
                .await?;
            progress.must_read = false;
            if page.batches.is_empty() {
                // Everything committed is published.
                progress.known_committed = published;
                return Ok(());
            }
            for batch in page.batches {
                self.dispatcher.publish(batch);
            }
        }
    }

    /// Lets [`catch_up`](Self::catch_up) know how far publication got.
    fn tell_published(&self, published: u64) {
        self.published.send_if_modified(|last| {
            let changed = *last != published;
            *last = published;
            changed
        });
    }
}

/// What the publisher task knows about commits.
struct Progress {
    /// The greatest sequence number known to be committed.
    known_committed: u64,
    /// Listenings seen so far.
    listenings: u64,
    /// Read the database even without news of a commit.
    must_read: bool,
}

impl Progress {
    fn learn(&mut self, news: CommitNews) {
        self.known_committed = self.known_committed.max(news.known_committed);
        if news.listenings != self.listenings {
            self.listenings = news.listenings;
            self.must_read = true;
        }
    }
}
