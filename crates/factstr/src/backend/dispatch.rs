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
//! and its hand-over to live delivery, handler error and panic isolation, and
//! catch-up from storage for a stream that falls too far behind (so a slow
//! stream never grows memory without bound).
//!
//! # Implementation
//!
//! Each stream has a queue (bounded by [`MAX_QUEUED_EVENTS`]) and its own
//! thread. `publish` only appends the shared batch to the queues, so appends
//! never wait for handlers. The thread filters a batch with the stream's query
//! and runs the handler's future to completion with a tokio handle (one small
//! runtime for all streams provides timers and I/O), so a handler that blocks
//! its thread delays only its own stream.
//!
//! A stream whose queue is full stops queueing and remembers where it stopped;
//! when its thread has drained the queue it takes the current head under the
//! registry lock (which `publish` also holds), re-joins live delivery and
//! reads the batches in between from the store. Durable registration does the
//! same with the stored cursor as its starting point, so no batch falls between
//! replay and live delivery, and a batch covered by both is delivered once.
//! A published batch that leaves a gap after the last one (another process
//! committed in between) sends every stream the same way through storage.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::backend::validation;
use crate::{DurableStream, EventQuery, EventRecord, EventStoreError, EventStream, HandleStream};

/// Most events a stream keeps queued in memory; beyond it the stream catches
/// up from storage once its handler has worked through the queue.
pub const MAX_QUEUED_EVENTS: usize = 16_384;

/// Events requested per page when a stream reads committed batches from
/// storage (durable replay and catch-up).
pub const READ_PAGE_EVENTS: usize = 2_048;

/// How long registering a durable name waits for a stream that was
/// unsubscribed but is still finishing its last handler call.
pub const STOPPING_STREAM_PATIENCE: Duration = Duration::from_secs(30);

const RETRY_DELAY_FIRST: Duration = Duration::from_millis(50);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// What a store provides to the dispatcher: committed batches and durable
/// cursors.
///
/// Methods are called from stream delivery threads and from registration,
/// never while the dispatcher holds a lock.
pub trait CommittedLog: Send + Sync + 'static {
    /// Reads committed batches with sequence numbers in
    /// `request.after < s <= request.through`, in ascending order.
    ///
    /// Each returned batch holds events of one committed batch only, in
    /// sequence order, and a committed batch is never split across pages.
    /// When `request.query` is `Some`, the store may leave out events (and
    /// batches) that do not match it; the dispatcher applies the query again.
    /// `scanned_through` tells how far the read got: everything up to it that
    /// the dispatcher needs is in `batches`. It must be greater than
    /// `request.after` (unless `after == through`) and at most
    /// `request.through`. `max_events` is a page size hint.
    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError>;

    /// Opens the durable stream `name` for delivery by this process.
    ///
    /// Creates it with `query` and cursor 0 when it does not exist yet, and
    /// returns what is stored for it. The dispatcher compares the stored
    /// query with `query` and rejects a mismatch. A store that shares its log
    /// with other processes claims the name here and fails with
    /// `BackendFailure` when another process holds it.
    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError>;

    /// Records that every fact the stream needs up to `cursor` was handled.
    /// Cursors never move backwards: the store keeps the greater value.
    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError>;

    /// Releases the claim taken by `open_durable_stream`.
    fn close_durable_stream(&self, name: &str);
}

/// A request for committed batches; see [`CommittedLog::read_committed_batches`].
#[derive(Clone, Copy, Debug)]
pub struct BatchReadRequest<'a> {
    /// Exclusive lower bound.
    pub after: u64,
    /// Inclusive upper bound.
    pub through: u64,
    /// The stream's query, which the store may use to narrow the read.
    pub query: Option<&'a EventQuery>,
    /// Page size hint in events.
    pub max_events: usize,
}

/// One page of committed batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommittedBatchPage {
    /// Committed batches (possibly narrowed by the request's query), ascending.
    pub batches: Vec<Vec<EventRecord>>,
    /// The sequence number the read covered, inclusive.
    pub scanned_through: u64,
}

/// What a store keeps for a durable stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableStreamState {
    /// The query the stream was first registered with, normalized.
    pub query: EventQuery,
    /// The last sequence number the stream has handled (0 at first).
    pub cursor: u64,
}

/// The normalized form of a stream query: no `min_sequence_number`, and no
/// filters when it matches everything. Stores persist durable queries in this
/// form.
pub fn normalized_stream_query(query: &EventQuery) -> EventQuery {
    EventQuery {
        filters: if query.matches_everything() {
            None
        } else {
            query.filters.clone()
        },
        min_sequence_number: None,
    }
}

/// The live subscriber registry and delivery machinery of one store.
///
/// Dropping the dispatcher does not stop streams; call [`close`](Self::close)
/// when the store closes.
#[derive(Debug)]
pub struct StreamDispatcher {
    core: Arc<DispatchCore>,
}

impl StreamDispatcher {
    /// A dispatcher for a log whose last committed sequence number is
    /// `last_committed` (0 when empty). Live streams start after it.
    pub fn new(last_committed: u64) -> Self {
        Self {
            core: Arc::new(DispatchCore {
                registry: Mutex::new(Registry {
                    last_published: last_committed,
                    subscriptions: Vec::new(),
                    active_durable_names: HashMap::new(),
                    closed: false,
                }),
                claims_released: Condvar::new(),
                next_stream_id: AtomicU64::new(1),
            }),
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
        let mut registry = lock(&self.core.registry);
        if registry.closed {
            return;
        }
        if last_sequence_number <= registry.last_published {
            tracing::warn!(
                last_sequence_number,
                last_published = registry.last_published,
                "ignoring a committed batch published twice or out of order"
            );
            return;
        }
        if registry.subscriptions.is_empty() {
            registry.last_published = last_sequence_number;
            return;
        }
        let batch: Arc<[EventRecord]> = batch().into();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        // Batches committed by another process sharing the log leave a gap
        // here; streams then read everything from their position on from
        // storage instead of skipping the gap.
        let contiguous = first.sequence_number == registry.last_published + 1;
        let last = last.sequence_number;
        registry.last_published = last;
        for subscription in &registry.subscriptions {
            subscription.offer(&batch, last, contiguous);
        }
    }

    /// The last sequence number published (or given to [`new`](Self::new)).
    pub fn last_published(&self) -> u64 {
        lock(&self.core.registry).last_published
    }

    /// Registers a live stream of every future committed batch.
    pub fn stream_all(
        &self,
        log: Arc<dyn CommittedLog>,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.subscribe(log, None, None, handle)
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
        self.subscribe(log, Some(query), None, handle)
    }

    /// Registers a durable stream of every committed batch after its cursor.
    /// Returns once the replay of stored batches has finished.
    pub fn stream_all_durable(
        &self,
        log: Arc<dyn CommittedLog>,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        validation::validate_durable_stream(durable_stream)?;
        self.subscribe(log, None, Some(durable_stream.name()), handle)
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
        validation::validate_durable_stream(durable_stream)?;
        validation::validate_stream_query(query)?;
        self.subscribe(log, Some(query), Some(durable_stream.name()), handle)
    }

    /// Stops every stream (each after its handler call in progress, if any)
    /// and refuses new registrations and publications. Stores call it when
    /// they close.
    pub fn close(&self) {
        let stopped = {
            let mut registry = lock(&self.core.registry);
            registry.closed = true;
            std::mem::take(&mut registry.subscriptions)
        };
        for subscription in stopped {
            subscription.stop(&self.core);
        }
    }

    fn subscribe(
        &self,
        log: Arc<dyn CommittedLog>,
        query: Option<&EventQuery>,
        durable_name: Option<&str>,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        let runtime = handler_runtime()?;
        let query = query.map(normalized_stream_query);
        let start = match durable_name {
            Some(name) => {
                let wanted = query.clone().unwrap_or_default();
                StreamStart::Durable {
                    cursor: self.claim_durable(log.as_ref(), name, &wanted)?,
                }
            }
            None => StreamStart::Live,
        };
        let query = query.filter(|query| !query.matches_everything());

        let (subscription, backlog) = {
            let mut registry = lock(&self.core.registry);
            if registry.closed {
                drop(registry);
                if let Some(name) = durable_name {
                    self.release_claim(log.as_ref(), name);
                }
                return Err(EventStoreError::backend("the store is closed"));
            }
            let head = registry.last_published;
            let (handled_through, backlog) = match start {
                StreamStart::Live => (head, None),
                StreamStart::Durable { cursor } if cursor < head => (
                    cursor,
                    Some(Backlog {
                        after: cursor,
                        through: head,
                    }),
                ),
                StreamStart::Durable { cursor } => (cursor, None),
            };
            let subscription = Arc::new(Subscription {
                id: self.core.next_stream_id.fetch_add(1, Ordering::Relaxed),
                query,
                durable_name: durable_name.map(str::to_owned),
                log: Arc::downgrade(&log),
                state: Mutex::new(DeliveryState {
                    queue: VecDeque::new(),
                    queued_events: 0,
                    enqueued_through: head,
                    lagging: false,
                    backlog,
                    stopping: false,
                    handler_running: false,
                    waiting: false,
                    claim_released: false,
                }),
                wake: Condvar::new(),
                delivery_thread: OnceLock::new(),
            });
            registry.subscriptions.push(Arc::clone(&subscription));
            if let Some(name) = durable_name {
                registry
                    .active_durable_names
                    .insert(name.to_owned(), Some(Arc::downgrade(&subscription)));
            }
            (subscription, (backlog, handled_through))
        };
        let (backlog, handled_through) = backlog;

        let (registered_tx, registered_rx) = sync_channel(1);
        let delivery = Delivery {
            core: Arc::downgrade(&self.core),
            subscription: Arc::clone(&subscription),
            handle,
            runtime: runtime.handle().clone(),
            handled_through,
            registration: backlog.map(|_| registered_tx),
            replay_error: None,
            retry_delay: RETRY_DELAY_FIRST,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("factstr-stream-{}", subscription.id))
            .spawn(move || delivery.run());
        if let Err(error) = spawned {
            subscription.finish(&self.core);
            return Err(EventStoreError::backend(format!(
                "cannot start the delivery thread of stream {}: {error}",
                subscription.id
            )));
        }

        let stream = EventStream::new(
            subscription.id,
            SubscriptionStop {
                core: Arc::downgrade(&self.core),
                subscription: Arc::clone(&subscription),
            },
        );
        if backlog.is_some() {
            match registered_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(EventStoreError::backend(format!(
                        "stream {} stopped before its replay finished",
                        subscription.id
                    )));
                }
            }
        }
        Ok(stream)
    }

    fn claim_durable(
        &self,
        log: &dyn CommittedLog,
        name: &str,
        query: &EventQuery,
    ) -> Result<u64, EventStoreError> {
        self.take_name(name)?;
        let stored = match log.open_durable_stream(name, query) {
            Ok(stored) => stored,
            Err(error) => {
                lock(&self.core.registry).active_durable_names.remove(name);
                self.core.claims_released.notify_all();
                return Err(error);
            }
        };
        if stored.query != *query {
            self.release_claim(log, name);
            return Err(EventStoreError::backend(format!(
                "durable stream `{name}` is registered with a different query; \
                 use a new name for a new query"
            )));
        }
        Ok(stored.cursor)
    }

    /// Claims `name` in this process. A name whose stream was unsubscribed
    /// but is still finishing its last handler call becomes free when that
    /// call returns: wait for it (at most [`STOPPING_STREAM_PATIENCE`]),
    /// unless this is that stream's own delivery thread, which would wait for
    /// itself.
    fn take_name(&self, name: &str) -> Result<(), EventStoreError> {
        let deadline = Instant::now() + STOPPING_STREAM_PATIENCE;
        let mut registry = lock(&self.core.registry);
        loop {
            if registry.closed {
                return Err(EventStoreError::backend("the store is closed"));
            }
            let holder = match registry.active_durable_names.get(name) {
                None => {
                    registry.active_durable_names.insert(name.to_owned(), None);
                    return Ok(());
                }
                Some(holder) => holder.as_ref().and_then(Weak::upgrade),
            };
            let stopping_elsewhere = holder.as_ref().is_some_and(|holder| {
                lock(&holder.state).stopping
                    && holder.delivery_thread.get() != Some(&std::thread::current().id())
            });
            let left = deadline.saturating_duration_since(Instant::now());
            if !stopping_elsewhere || left.is_zero() {
                let still = if stopping_elsewhere {
                    " (it was unsubscribed, but its last handler call has not returned)"
                } else {
                    ""
                };
                return Err(EventStoreError::backend(format!(
                    "durable stream `{name}` is already active{still}"
                )));
            }
            registry = self
                .core
                .claims_released
                .wait_timeout(registry, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn release_claim(&self, log: &dyn CommittedLog, name: &str) {
        self.core.release_claim(Some(log), name);
    }
}

impl Drop for StreamDispatcher {
    fn drop(&mut self) {
        self.close();
    }
}

enum StreamStart {
    Live,
    Durable { cursor: u64 },
}

#[derive(Debug)]
struct DispatchCore {
    registry: Mutex<Registry>,
    /// Signalled whenever a durable name is released.
    claims_released: Condvar,
    next_stream_id: AtomicU64,
}

impl DispatchCore {
    /// Releases a durable name: first the store's claim (so a process that
    /// sees the name free can claim it in the store too), then ours.
    fn release_claim(&self, log: Option<&dyn CommittedLog>, name: &str) {
        if let Some(log) = log {
            log.close_durable_stream(name);
        }
        lock(&self.registry).active_durable_names.remove(name);
        self.claims_released.notify_all();
    }
}

#[derive(Debug)]
struct Registry {
    last_published: u64,
    subscriptions: Vec<Arc<Subscription>>,
    /// Durable names claimed in this process, with the stream holding each
    /// (`None` while its registration is still starting).
    active_durable_names: HashMap<String, Option<Weak<Subscription>>>,
    closed: bool,
}

struct Subscription {
    id: u64,
    /// `None` delivers every event.
    query: Option<EventQuery>,
    durable_name: Option<String>,
    log: Weak<dyn CommittedLog>,
    state: Mutex<DeliveryState>,
    wake: Condvar,
    /// The thread that runs the handler, once it started.
    delivery_thread: OnceLock<std::thread::ThreadId>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Subscription")
            .field("id", &self.id)
            .field("durable_name", &self.durable_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct DeliveryState {
    queue: VecDeque<Arc<[EventRecord]>>,
    queued_events: usize,
    /// Everything published up to here is queued, delivered, or in `backlog`.
    enqueued_through: u64,
    /// The queue overflowed: publications after `enqueued_through` were not
    /// queued and must be read from storage.
    lagging: bool,
    /// Committed batches to read from storage before the queue.
    backlog: Option<Backlog>,
    stopping: bool,
    handler_running: bool,
    waiting: bool,
    claim_released: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Backlog {
    after: u64,
    through: u64,
}

impl Subscription {
    /// Queues a published batch; called with the registry locked.
    fn offer(&self, batch: &Arc<[EventRecord]>, last: u64, contiguous: bool) {
        let mut state = lock(&self.state);
        if state.stopping || state.lagging || last <= state.enqueued_through {
            return;
        }
        let overflowing =
            !state.queue.is_empty() && state.queued_events + batch.len() > MAX_QUEUED_EVENTS;
        if overflowing || !contiguous {
            state.lagging = true;
            if state.waiting {
                self.wake.notify_one();
            }
            return;
        }
        state.queue.push_back(Arc::clone(batch));
        state.queued_events += batch.len();
        state.enqueued_through = last;
        if state.waiting {
            self.wake.notify_one();
        }
    }

    /// Stops future deliveries. Releases the durable name now when no handler
    /// is running, otherwise the delivery thread releases it when the handler
    /// returns.
    fn stop(&self, core: &DispatchCore) {
        let release_now = {
            let mut state = lock(&self.state);
            state.stopping = true;
            self.wake.notify_one();
            let release =
                self.durable_name.is_some() && !state.handler_running && !state.claim_released;
            if release {
                state.claim_released = true;
            }
            release
        };
        if release_now {
            self.release_durable_name(core);
        }
    }

    /// Stops after the delivery thread's own decision (handler failure, end
    /// of the store) and releases the durable name if still held.
    fn finish(&self, core: &DispatchCore) {
        lock(&core.registry)
            .subscriptions
            .retain(|subscription| subscription.id != self.id);
        let release = {
            let mut state = lock(&self.state);
            state.stopping = true;
            let release = self.durable_name.is_some() && !state.claim_released;
            state.claim_released = true;
            release
        };
        if release {
            self.release_durable_name(core);
        }
    }

    fn release_durable_name(&self, core: &DispatchCore) {
        if let Some(name) = &self.durable_name {
            let log = self.log.upgrade();
            core.release_claim(log.as_deref(), name);
        }
    }
}

/// Stops one subscription; held by its [`EventStream`].
pub(crate) struct SubscriptionStop {
    core: Weak<DispatchCore>,
    subscription: Arc<Subscription>,
}

impl SubscriptionStop {
    pub(crate) fn stop(&self) {
        match self.core.upgrade() {
            Some(core) => {
                lock(&core.registry)
                    .subscriptions
                    .retain(|subscription| subscription.id != self.subscription.id);
                self.subscription.stop(&core);
            }
            None => {
                let mut state = lock(&self.subscription.state);
                state.stopping = true;
                self.subscription.wake.notify_one();
            }
        }
    }
}

/// The delivery thread of one stream.
struct Delivery {
    core: Weak<DispatchCore>,
    subscription: Arc<Subscription>,
    handle: HandleStream,
    runtime: tokio::runtime::Handle,
    /// Every batch up to here was handled (or did not concern this stream).
    handled_through: u64,
    /// Set while a durable registration waits for its replay.
    registration: Option<SyncSender<Result<(), EventStoreError>>>,
    /// Why the replay failed, sent to the registration once the name is free.
    replay_error: Option<EventStoreError>,
    retry_delay: Duration,
}

enum Work {
    Backlog(Backlog),
    Batch(Arc<[EventRecord]>),
    Stop,
}

enum Outcome {
    Continue,
    Stop,
}

impl Delivery {
    fn run(mut self) {
        let _ = self
            .subscription
            .delivery_thread
            .set(std::thread::current().id());
        loop {
            let outcome = match self.next_work() {
                Work::Stop => Outcome::Stop,
                Work::Batch(batch) => self.deliver(&batch),
                Work::Backlog(backlog) => self.read_backlog(backlog),
            };
            if let Outcome::Stop = outcome {
                break;
            }
        }
        if let Some(core) = self.core.upgrade() {
            self.subscription.finish(&core);
        }
        // Only now is the durable name free, so a caller that sees the error
        // can register the name again at once.
        if let Some(registration) = self.registration.take() {
            let error = self.replay_error.take().unwrap_or_else(|| {
                EventStoreError::backend(format!(
                    "stream {} stopped before its replay finished",
                    self.subscription.id
                ))
            });
            let _ = registration.send(Err(error));
        }
    }

    fn next_work(&self) -> Work {
        let subscription = &self.subscription;
        let mut state = lock(&subscription.state);
        loop {
            if state.stopping {
                return Work::Stop;
            }
            if let Some(backlog) = state.backlog {
                return Work::Backlog(backlog);
            }
            if let Some(batch) = state.queue.pop_front() {
                state.queued_events -= batch.len();
                return Work::Batch(batch);
            }
            if state.lagging {
                drop(state);
                self.rejoin_live();
                state = lock(&subscription.state);
                continue;
            }
            state.waiting = true;
            state = subscription
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting = false;
        }
    }

    /// Takes the current head under the registry lock, so that every later
    /// publication is queued and everything before it is read from storage.
    fn rejoin_live(&self) {
        let Some(core) = self.core.upgrade() else {
            lock(&self.subscription.state).stopping = true;
            return;
        };
        let registry = lock(&core.registry);
        let mut state = lock(&self.subscription.state);
        if !state.lagging {
            return;
        }
        let head = registry.last_published;
        if head > state.enqueued_through {
            state.backlog = Some(Backlog {
                after: state.enqueued_through,
                through: head,
            });
        }
        state.enqueued_through = head;
        state.lagging = false;
    }

    fn read_backlog(&mut self, backlog: Backlog) -> Outcome {
        let Some(log) = self.subscription.log.upgrade() else {
            return Outcome::Stop;
        };
        let request = BatchReadRequest {
            after: backlog.after,
            through: backlog.through,
            query: self.subscription.query.as_ref(),
            max_events: READ_PAGE_EVENTS,
        };
        let page = log
            .read_committed_batches(&request)
            .and_then(|page| check_page(&request, page));
        drop(log);
        let page = match page {
            Ok(page) => page,
            Err(error) => return self.backlog_read_failed(error),
        };
        self.retry_delay = RETRY_DELAY_FIRST;
        for batch in &page.batches {
            if let Outcome::Stop = self.deliver(batch) {
                return Outcome::Stop;
            }
        }
        self.handled_through = self.handled_through.max(page.scanned_through);
        let finished = page.scanned_through >= backlog.through;
        {
            let mut state = lock(&self.subscription.state);
            if state.stopping {
                return Outcome::Stop;
            }
            state.backlog = (!finished).then_some(Backlog {
                after: page.scanned_through,
                through: backlog.through,
            });
        }
        self.advance_durable_cursor(page.scanned_through);
        if finished && let Some(registration) = self.registration.take() {
            let _ = registration.send(Ok(()));
        }
        Outcome::Continue
    }

    fn backlog_read_failed(&mut self, error: EventStoreError) -> Outcome {
        let stream_id = self.subscription.id;
        if self.registration.is_some() {
            let name = self
                .subscription
                .durable_name
                .as_deref()
                .unwrap_or_default();
            self.replay_error = Some(EventStoreError::backend(format!(
                "durable stream `{name}` could not replay: {error}"
            )));
            return Outcome::Stop;
        }
        tracing::warn!(
            stream_id,
            %error,
            retry_in_ms = self.retry_delay.as_millis() as u64,
            "reading committed batches failed; retrying"
        );
        let state = lock(&self.subscription.state);
        let (state, _) = self
            .subscription
            .wake
            .wait_timeout_while(state, self.retry_delay, |state| !state.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        self.retry_delay = (self.retry_delay * 2).min(RETRY_DELAY_MAX);
        if state.stopping {
            Outcome::Stop
        } else {
            Outcome::Continue
        }
    }

    /// Filters `batch` for this stream and hands it to the handler.
    fn deliver(&mut self, batch: &[EventRecord]) -> Outcome {
        let Some(last) = batch.last().map(|record| record.sequence_number) else {
            return Outcome::Continue;
        };
        if last <= self.handled_through {
            return Outcome::Continue;
        }
        let events: Vec<EventRecord> = batch
            .iter()
            .filter(|record| {
                record.sequence_number > self.handled_through
                    && self
                        .subscription
                        .query
                        .as_ref()
                        .is_none_or(|query| query.matches_record(record))
            })
            .cloned()
            .collect();
        if events.is_empty() {
            self.handled_through = last;
            return Outcome::Continue;
        }
        let first = events[0].sequence_number;

        {
            let mut state = lock(&self.subscription.state);
            if state.stopping {
                return Outcome::Stop;
            }
            state.handler_running = true;
        }
        let result = run_handler(&self.runtime, &self.handle, events);
        let stopping = {
            let mut state = lock(&self.subscription.state);
            state.handler_running = false;
            state.stopping
        };

        match result {
            Ok(()) => {
                self.handled_through = last;
                self.advance_durable_cursor(last);
                if stopping {
                    Outcome::Stop
                } else {
                    Outcome::Continue
                }
            }
            Err(message) => self.handler_failed(first, last, &message),
        }
    }

    fn handler_failed(&mut self, first: u64, last: u64, message: &str) -> Outcome {
        let stream_id = self.subscription.id;
        let Some(name) = self.subscription.durable_name.as_deref() else {
            tracing::error!(
                stream_id,
                first_sequence_number = first,
                last_sequence_number = last,
                error = message,
                "stream handler failed; the stream stays subscribed"
            );
            self.handled_through = last;
            return Outcome::Continue;
        };
        match self.registration {
            Some(_) => {
                self.replay_error = Some(EventStoreError::backend(format!(
                    "durable stream `{name}` replay failed at sequence {first}: {message}"
                )));
            }
            None => tracing::error!(
                stream_id,
                durable_stream = name,
                first_sequence_number = first,
                last_sequence_number = last,
                error = message,
                "durable stream handler failed; the stream stops and keeps its cursor"
            ),
        }
        Outcome::Stop
    }

    fn advance_durable_cursor(&self, cursor: u64) {
        let Some(name) = self.subscription.durable_name.as_deref() else {
            return;
        };
        let Some(log) = self.subscription.log.upgrade() else {
            return;
        };
        if let Err(error) = log.advance_durable_cursor(name, cursor) {
            tracing::warn!(
                stream_id = self.subscription.id,
                durable_stream = name,
                cursor,
                %error,
                "could not store the durable cursor; the stream continues"
            );
        }
    }
}

fn check_page(
    request: &BatchReadRequest<'_>,
    page: CommittedBatchPage,
) -> Result<CommittedBatchPage, EventStoreError> {
    let progressed = page.scanned_through > request.after || request.after >= request.through;
    let in_range = page.scanned_through <= request.through
        && page.batches.iter().flatten().all(|record| {
            record.sequence_number > request.after && record.sequence_number <= page.scanned_through
        });
    if progressed && in_range {
        Ok(page)
    } else {
        Err(EventStoreError::backend(format!(
            "the store returned a page of committed batches outside ({}, {}] (scanned through {})",
            request.after, request.through, page.scanned_through
        )))
    }
}

/// Runs one handler call to completion on the calling (delivery) thread,
/// turning an error or a panic into a message.
fn run_handler(
    runtime: &tokio::runtime::Handle,
    handle: &HandleStream,
    batch: Vec<EventRecord>,
) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let future = handle.call(batch);
        runtime.block_on(AssertUnwindSafe(future).catch_unwind())
    }));
    match outcome {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(error.to_string()),
        Ok(Err(panic)) | Err(panic) => Err(format!("handler panicked: {}", panic_message(&*panic))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}

/// The tokio runtime that drives handler timers and I/O for every store in the
/// process. Handler futures themselves run on their stream's thread.
fn handler_runtime() -> Result<&'static tokio::runtime::Runtime, EventStoreError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("factstr-handler-io")
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|message| {
            EventStoreError::backend(format!(
                "cannot start the stream handler runtime: {message}"
            ))
        })
}

/// Locks `mutex`, recovering the data if another thread panicked while
/// holding it: every critical section here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
