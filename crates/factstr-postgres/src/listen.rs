//! The notification task: a connection that LISTENs on the schema's
//! channel (each append transaction sends `pg_notify` with its last sequence
//! number, delivered at commit) and tells the publisher about notifications
//! and re-established listening, reconnecting when the connection is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use factstr::EventStoreError;
use factstr::backend::Backoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::oneshot;

use crate::error::database_failure;
use crate::news::{NewsSender, tell_committed, tell_listening};

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
                tell_listening(&news);
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
