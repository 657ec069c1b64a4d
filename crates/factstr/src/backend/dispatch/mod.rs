//! Stream delivery shared by every store.
//!
//! A store owns one [`StreamDispatcher`] and tells it two things:
//!
//! - [`StreamDispatcher::publish`]: "this batch committed", called once per
//!   committed batch, in commit order, while commits are still serialized
//!   (inside the store's writer lock or writer thread), so that delivery order
//!   equals sequence order;
//! - [`CommittedLog`]: how to read committed batches after a sequence number
//!   and how to keep durable cursors.
//!
//! The dispatcher does the rest: the subscriber registry, one delivery thread
//! per stream that awaits each handler before the next batch, durable replay
//! and its hand-over to live delivery, handler error and panic isolation,
//! catch-up from storage for a stream that falls too far behind (so a slow
//! stream never grows memory without bound), and the end of streams on
//! unsubscribe and on close.
//!
//! # Implementation
//!
//! The parts, as tokio splits `sync::mpsc`: `log` (the store's side, the
//! [`CommittedLog`] trait), `registry` (published position, registered
//! streams, durable names, running deliveries), `subscription` (one stream's
//! queue and stop request), `delivery` (the loop on the stream's thread) and
//! `handler` (running one handler call, with its stream's stop signal).
//!
//! Each stream has a queue (bounded by [`MAX_QUEUED_EVENTS`]), its own thread
//! and its own tokio current-thread runtime, so a handler that blocks, or
//! blocks a task it spawned, delays only its own stream. `publish` only
//! appends the shared batch to the queues, so appends never wait for
//! handlers.
//!
//! A stream whose queue is full stops queueing and remembers where it stopped;
//! when its thread has drained the queue it takes the current head under the
//! registry lock (which `publish` also holds), re-joins live delivery and
//! reads the batches in between from the store. Durable registration does the
//! same with the stored cursor as its starting point and the store's
//! committed head (which includes other processes' commits) as its end, so
//! no batch falls between replay and live delivery, and a batch covered by
//! both is delivered once. A published batch that does not follow the last
//! one a stream has (another process committed in between) sends that stream
//! the same way through storage.
//!
//! Unsubscribing takes the stream out of the registry and records the last
//! published sequence number; the stream delivers everything up to it, then
//! ends. Closing does the same for every stream and waits up to
//! [`CLOSE_PATIENCE`] for them to end.

mod delivery;
mod handler;
mod log;
mod pool;
mod registry;
mod subscription;

use futures::channel::oneshot;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use handler::StreamStopSignal;
pub use log::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, normalized_stream_query,
};

use self::delivery::Delivery;
use self::registry::DispatchCore;
use self::subscription::{Backlog, DeliveryState, Subscription};
use crate::backend::Backoff;
use crate::backend::sync::lock;
use crate::backend::validation;
use crate::stream::StreamStatus;
use crate::{
    DurableStream, EventQuery, EventRecord, EventStoreError, EventStream, HandleStream,
    StreamStopReason,
};

/// Most events a stream keeps queued in memory; beyond it the stream catches
/// up from storage once its handler has worked through the queue.
pub const MAX_QUEUED_EVENTS: usize = 16_384;

/// Events requested per page when a stream reads committed batches from
/// storage (durable replay and catch-up).
pub const READ_PAGE_EVENTS: usize = 2_048;

/// How long registering a durable name waits for a stream of that name that
/// was unsubscribed but is still delivering the batches committed before.
pub const STOPPING_STREAM_PATIENCE: Duration = Duration::from_secs(30);

/// How long closing a store waits, in all, for its streams to deliver the
/// batches committed before the close. Streams still busy then stop after
/// their handler call in progress, without waiting further.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// The live subscriber registry and delivery machinery of one store.
///
/// Dropping the dispatcher closes it (see [`close`](Self::close)).
#[derive(Debug)]
pub struct StreamDispatcher {
    core: Arc<DispatchCore>,
}

impl StreamDispatcher {
    /// A dispatcher for a log whose last committed sequence number is
    /// `last_committed` (0 when empty). Live streams start after it.
    pub fn new(last_committed: u64) -> Self {
        Self {
            core: Arc::new(DispatchCore::new(last_committed)),
        }
    }

    /// Hands a committed batch to every stream.
    ///
    /// Must be called once per committed batch, in commit order, before the
    /// next commit can happen; it never blocks on a handler. A batch at or
    /// below the last published sequence number is ignored. A batch that does
    /// not follow the last published one directly (another process appended
    /// in between) makes every stream read the missing batches from the
    /// [`CommittedLog`] before it continues.
    pub fn publish(&self, batch: Vec<EventRecord>) {
        let Some(last) = batch.last().map(|record| record.sequence_number) else {
            return;
        };
        self.publish_with(last, || batch);
    }

    /// [`publish`](Self::publish) for a batch ending at `last_sequence_number`
    /// that is built only when some stream is registered: with no stream, the
    /// dispatcher just notes how far the log goes.
    pub fn publish_with(
        &self,
        last_sequence_number: u64,
        batch: impl FnOnce() -> Vec<EventRecord>,
    ) {
        let mut registry = self.core.registry();
        if registry.closed {
            return;
        }
        if last_sequence_number <= registry.last_published {
            // Stores may publish a batch from more than one place (the
            // writer, and a reader of other processes' commits).
            tracing::trace!(
                last_sequence_number,
                last_published = registry.last_published,
                "ignoring a committed batch published already"
            );
            return;
        }
        registry.last_published = last_sequence_number;
        if registry.subscriptions.is_empty() {
            return;
        }
        let batch = Arc::new(batch());
        let mut idle = Vec::new();
        for subscription in &registry.subscriptions {
            if subscription.offer(&batch) {
                idle.push(Arc::clone(subscription));
            }
        }
        // The queues hold the batch now; the last stream to take it takes it
        // without a copy.
        drop(batch);
        // One hand-over to the workers for all of them.
        self.core.pool.schedule_all(idle);
    }

    /// The last sequence number published (or given to [`new`](Self::new)).
    pub fn last_published(&self) -> u64 {
        self.core.registry().last_published
    }

    /// Registers a live stream of every future committed batch.
    pub fn stream_all(
        &self,
        log: Arc<dyn CommittedLog>,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.start(log, None, None, handle)?.wait()
    }

    /// Registers a live stream of the events matching `query` in each future
    /// committed batch.
    pub fn stream_to(
        &self,
        log: Arc<dyn CommittedLog>,
        query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        validation::validate_stream_query(query)?;
        self.start(log, Some(query), None, handle)?.wait()
    }

    /// Registers a durable stream of every committed batch after its cursor.
    /// Returns once the replay of stored batches has finished.
    pub fn stream_all_durable(
        &self,
        log: Arc<dyn CommittedLog>,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.start_durable(log, durable_stream, None, handle)?
            .wait()
    }

    /// Registers a durable stream of the events matching `query` after its
    /// cursor. Returns once the replay of stored batches has finished.
    pub fn stream_to_durable(
        &self,
        log: Arc<dyn CommittedLog>,
        durable_stream: &DurableStream,
        query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.start_durable(log, durable_stream, Some(query), handle)?
            .wait()
    }

    /// Starts a durable stream (of the events matching `query`, or of every
    /// event) without waiting for its replay: the returned [`Registration`]
    /// waits, blocking ([`Registration::wait`]) or async
    /// ([`Registration::replayed`]). Claiming the name and reading the
    /// cursor happen here, through the [`CommittedLog`].
    pub fn start_durable(
        &self,
        log: Arc<dyn CommittedLog>,
        durable_stream: &DurableStream,
        query: Option<&EventQuery>,
        handle: HandleStream,
    ) -> Result<Registration, EventStoreError> {
        validation::validate_durable_stream(durable_stream)?;
        if let Some(query) = query {
            validation::validate_stream_query(query)?;
        }
        self.start(log, query, Some(durable_stream.name()), handle)
    }

    /// Closes the dispatcher: refuses new registrations and publications,
    /// lets every stream deliver the batches published before the call, and
    /// waits up to [`CLOSE_PATIENCE`] in all for the streams to end (their
    /// last durable cursors handed to the store). Streams still busy then
    /// stop after their handler call in progress. A stream whose handler
    /// closes the store is not waited for. Calling it again does nothing.
    pub fn close(&self) {
        let (registered, through) = {
            let mut registry = self.core.registry();
            if registry.closed {
                return;
            }
            registry.closed = true;
            (
                std::mem::take(&mut registry.subscriptions),
                registry.last_published,
            )
        };
        self.core.claims_released.notify_all();
        for subscription in registered {
            subscription.request_stop(StreamStopReason::StoreClosed, through);
        }

        let deadline = Instant::now() + CLOSE_PATIENCE;
        let mut running = lock(&self.core.running);
        loop {
            let others: Vec<Arc<Subscription>> = running
                .iter()
                .filter(|subscription| !subscription.delivering_here())
                .cloned()
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if others.is_empty() {
                drop(running);
                self.core.pool.close();
                return;
            }
            if left.is_zero() {
                drop(running);
                let ids: Vec<u64> = others.iter().map(|subscription| subscription.id).collect();
                tracing::warn!(
                    streams = ?ids,
                    patience_ms = CLOSE_PATIENCE.as_millis() as u64,
                    "streams did not finish delivering before the store closed; \
                     they stop after their handler call in progress"
                );
                for subscription in others {
                    subscription.abandon();
                }
                self.core.pool.close();
                return;
            }
            running = self
                .core
                .delivery_ended
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn start(
        &self,
        log: Arc<dyn CommittedLog>,
        query: Option<&EventQuery>,
        durable_name: Option<&str>,
        handle: HandleStream,
    ) -> Result<Registration, EventStoreError> {
        let runtime = handler::StreamRuntime::new().map_err(|error| {
            EventStoreError::backend(format!("cannot start a stream's runtime: {error}"))
        })?;
        self.core.pool.ensure_worker().map_err(|error| {
            EventStoreError::backend(format!("cannot start a stream delivery thread: {error}"))
        })?;
        let query = query.map(normalized_stream_query);
        let durable = match durable_name {
            Some(name) => {
                let wanted = query.clone().unwrap_or_default();
                Some(self.claim_durable(log.as_ref(), name, &wanted)?)
            }
            None => None,
        };
        let query = query.filter(|query| !query.matches_everything());
        let (registered_tx, registered_rx) = oneshot::channel();

        let (subscription, backlog) = {
            let mut registry = self.core.registry();
            if registry.closed {
                drop(registry);
                if let Some(name) = durable_name {
                    self.core.release_name(Some(log.as_ref()), name);
                }
                return Err(EventStoreError::backend("the store is closed"));
            }
            let (handled_through, head) = match durable {
                None => (registry.last_published, registry.last_published),
                Some(DurableStart { cursor, head }) => (cursor, head.max(registry.last_published)),
            };
            let backlog = (handled_through < head).then_some(Backlog {
                after: handled_through,
                through: head,
            });
            let subscription = Arc::new(Subscription {
                id: self.core.next_stream_id.fetch_add(1, Ordering::Relaxed),
                query,
                durable_name: durable_name.map(str::to_owned),
                log: Arc::downgrade(&log),
                state: Mutex::new(DeliveryState::new(head, backlog)),
                wake: tokio::sync::Notify::new(),
                pool: Arc::clone(&self.core.pool),
                stop_requested: tokio::sync::watch::Sender::new(false),
                status: Arc::new(StreamStatus::default()),
            });
            // The delivery is in place before a publication can find the
            // stream.
            lock(&subscription.state).delivery = Some(Delivery {
                core: Arc::downgrade(&self.core),
                subscription: Arc::clone(&subscription),
                handle,
                runtime: Arc::new(runtime),
                stop_signal: subscription.stop_signal(),
                handled_through,
                registration: backlog.map(|_| registered_tx),
                replay_error: None,
                backoff: Backoff::new(),
            });
            registry.subscriptions.push(Arc::clone(&subscription));
            if let Some(name) = durable_name {
                registry
                    .active_durable_names
                    .insert(name.to_owned(), Some(Arc::downgrade(&subscription)));
            }
            lock(&self.core.running).push(Arc::clone(&subscription));
            (subscription, backlog)
        };
        if backlog.is_some() {
            subscription.wake_delivery(lock(&subscription.state));
        }

        let stream = EventStream::delivered(
            subscription.id,
            stop_handle(Arc::downgrade(&self.core), Arc::clone(&subscription)),
            Arc::clone(&subscription.status),
        );
        Ok(Registration {
            stream,
            replayed: backlog.map(|_| registered_rx),
        })
    }

    /// Claims `name` here and in the store, checks its stored query, and
    /// reads where its replay starts and ends.
    fn claim_durable(
        &self,
        log: &dyn CommittedLog,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStart, EventStoreError> {
        self.core.take_name(name)?;
        let stored = match log.open_durable_stream(name, query) {
            Ok(stored) => stored,
            Err(error) => {
                self.core.registry().active_durable_names.remove(name);
                self.core.claims_released.notify_all();
                return Err(error);
            }
        };
        if stored.query != *query {
            self.core.release_name(Some(log), name);
            return Err(EventStoreError::backend(format!(
                "durable stream `{name}` is registered with a different query; \
                 use a new name for a new query"
            )));
        }
        // Read after the claim: everything committed before the
        // registration, by any process, is replayed.
        match log.committed_head() {
            Ok(head) => Ok(DurableStart {
                cursor: stored.cursor,
                head,
            }),
            Err(error) => {
                self.core.release_name(Some(log), name);
                Err(error)
            }
        }
    }
}

/// A stream whose registration may still be replaying stored batches.
#[must_use = "a registration does nothing until waited for; dropping it ends the stream"]
#[derive(Debug)]
pub struct Registration {
    stream: EventStream,
    replayed: Option<oneshot::Receiver<Result<(), EventStoreError>>>,
}

impl Registration {
    /// Blocks the calling thread until the replay has finished (at once for
    /// a live stream or a durable stream with nothing to replay).
    pub fn wait(self) -> Result<EventStream, EventStoreError> {
        let Some(replayed) = self.replayed else {
            return Ok(self.stream);
        };
        finish(self.stream, futures::executor::block_on(replayed))
    }

    /// Completes once the replay has finished, without blocking a thread.
    pub async fn replayed(self) -> Result<EventStream, EventStoreError> {
        let Some(replayed) = self.replayed else {
            return Ok(self.stream);
        };
        finish(self.stream, replayed.await)
    }
}

fn finish(
    stream: EventStream,
    replayed: Result<Result<(), EventStoreError>, oneshot::Canceled>,
) -> Result<EventStream, EventStoreError> {
    match replayed {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(error)) => Err(error),
        Err(oneshot::Canceled) => Err(EventStoreError::backend(format!(
            "stream {} stopped before its replay finished",
            stream.id()
        ))),
    }
}

impl Drop for StreamDispatcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where a durable registration's replay starts (its cursor) and ends.
struct DurableStart {
    cursor: u64,
    head: u64,
}

/// What [`EventStream::unsubscribe`] calls for a stream of this dispatcher.
fn stop_handle(
    core: std::sync::Weak<DispatchCore>,
    subscription: Arc<Subscription>,
) -> Arc<dyn Fn(u64) + Send + Sync> {
    Arc::new(move |_id| match core.upgrade() {
        Some(core) => core.stop(&subscription, StreamStopReason::Unsubscribed),
        // The dispatcher closed: the stream already stops.
        None => subscription.abandon(),
    })
}
