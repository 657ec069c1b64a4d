//! The delivery of one stream: queued batches, reads from storage, the
//! handler, durable cursors, and the end of the stream. It runs in turns on
//! the pool's workers, or on a thread of its own (see `pool`).

use futures::channel::oneshot;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::handler::{StreamRuntime, StreamStopSignal, run_handler};
use super::log::check_page;
use super::pool::{AfterTurn, TURN_BUDGET};
use super::registry::DispatchCore;
use super::subscription::{Backlog, Delivering, DeliveryState, Runner, Subscription};
use super::{BatchReadRequest, READ_PAGE_EVENTS};
use crate::backend::Backoff;
use crate::backend::sync::lock;
use crate::{EventRecord, EventStoreError, HandleStream, StreamStopReason};

pub(super) struct Delivery {
    pub(super) core: Weak<DispatchCore>,
    pub(super) subscription: Arc<Subscription>,
    pub(super) handle: HandleStream,
    /// The stream's own runtime, entered by whichever thread delivers.
    pub(super) runtime: Arc<StreamRuntime>,
    /// What handler calls see as their stop signal; kept, so that a call
    /// clones it rather than subscribing (and unsubscribing) anew.
    pub(super) stop_signal: StreamStopSignal,
    /// Every batch up to here was handled (or did not concern this stream).
    pub(super) handled_through: u64,
    /// Set while a durable registration waits for its replay.
    pub(super) registration: Option<oneshot::Sender<Result<(), EventStoreError>>>,
    /// Why the replay failed, sent to the registration once the name is free.
    pub(super) replay_error: Option<EventStoreError>,
    pub(super) backoff: Backoff,
}

enum Work {
    Backlog(Backlog),
    Batch(Arc<Vec<EventRecord>>),
    Stop(StreamStopReason),
}

enum Outcome {
    Continue,
    Stop(StreamStopReason),
}

/// A batch to hand to the handler: read from storage for this stream only,
/// or published to every stream.
enum Batch {
    Own(Vec<EventRecord>),
    Shared(Arc<Vec<EventRecord>>),
}

/// Runs `subscription`'s turn on the calling pool worker. `end_turn` tells
/// the pool the turn is over and answers whether the watch handed this
/// thread over to the stream meanwhile.
pub(super) fn take_turn(
    subscription: &Arc<Subscription>,
    end_turn: impl FnOnce() -> bool,
) -> AfterTurn {
    let _delivering = Delivering::start(subscription.id);
    let (delivery, first) = {
        let mut state = lock(&subscription.state);
        let delivery = state.delivery.take();
        let first = if delivery.is_some() {
            work_in(&mut state).ok().flatten()
        } else {
            None
        };
        (delivery, first)
    };
    let Some(mut delivery) = delivery else {
        // A queued stream's delivery waits in its state; nothing to do if
        // it is gone.
        return if end_turn() {
            AfterTurn::HandedOver
        } else {
            AfterTurn::Next
        };
    };
    let stopped = delivery.turn(first);
    let handed_over = end_turn();
    if let Some(reason) = stopped {
        delivery.end(reason);
        return if handed_over {
            AfterTurn::HandedOver
        } else {
            AfterTurn::Next
        };
    }
    if handed_over {
        lock(&subscription.state).runner = Runner::OwnThread;
        delivery.run_on_own_thread();
        return AfterTurn::HandedOver;
    }
    let spawned_tasks = delivery.runtime.has_alive_tasks();
    let mut state = lock(&subscription.state);
    state.delivery = Some(delivery);
    if spawned_tasks {
        // Tasks the handler spawned need their runtime driven between
        // batches: the stream gets a thread of its own.
        state.runner = Runner::OwnThread;
        drop(state);
        let own = Arc::clone(subscription);
        let spawned = std::thread::Builder::new()
            .name(format!("factstr-stream-{}", subscription.id))
            .spawn(move || {
                let delivery = lock(&own.state).delivery.take();
                if let Some(delivery) = delivery {
                    delivery.run_on_own_thread();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(
                stream_id = subscription.id,
                %error,
                "cannot start a thread for a stream whose handler spawned tasks; \
                 its tasks run only while it delivers"
            );
            state = lock(&subscription.state);
            state.runner = Runner::Queued;
        } else {
            return AfterTurn::Next;
        }
    }
    // More to do: queued again, behind the streams that waited.
    if state.has_work() {
        drop(state);
        subscription
            .pool
            .schedule_all(vec![Arc::clone(subscription)]);
    } else {
        state.runner = Runner::Idle;
    }
    AfterTurn::Next
}

/// The next thing to do according to `state`, if any; `Err` when the stream
/// is lagging and must first re-join live delivery (which takes the
/// registry's lock, so not here).
fn work_in(state: &mut DeliveryState) -> Result<Option<Work>, Lagging> {
    if state.abandon {
        return Ok(Some(Work::Stop(state.stop_reason())));
    }
    if let Some(backlog) = state.backlog {
        return Ok(Some(Work::Backlog(backlog)));
    }
    if let Some(batch) = state.queue.pop_front() {
        state.queued_events -= batch.len();
        return Ok(Some(Work::Batch(batch)));
    }
    if state.lagging {
        return Err(Lagging);
    }
    Ok(state
        .stop
        .as_ref()
        .map(|stop| Work::Stop(stop.reason.clone())))
}

struct Lagging;

impl std::fmt::Debug for Delivery {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Delivery")
            .field("stream", &self.subscription.id)
            .field("handled_through", &self.handled_through)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Delivers `first` and what else the stream has now, for about
    /// [`TURN_BUDGET`] from its second piece of work on (a turn with one
    /// batch reads no clock); the reason if the stream stopped.
    fn turn(&mut self, first: Option<Work>) -> Option<StreamStopReason> {
        let runtime = Arc::clone(&self.runtime);
        runtime
            .run(async {
                let mut next = first;
                let mut second_started: Option<Instant> = None;
                let mut pieces = 0_u32;
                loop {
                    let work = match next.take() {
                        Some(work) => work,
                        None => self.next_work_now()?,
                    };
                    pieces += 1;
                    if pieces == 2 {
                        second_started = Some(Instant::now());
                    }
                    if let Outcome::Stop(reason) = self.process(work).await {
                        return Some(reason);
                    }
                    if second_started.is_some_and(|started| started.elapsed() >= TURN_BUDGET) {
                        return None;
                    }
                }
            })
            .unwrap_or(Some(StreamStopReason::StoreClosed))
    }

    /// Delivers on the calling thread, which now belongs to this stream,
    /// until the stream stops, then ends it.
    pub(super) fn run_on_own_thread(mut self) {
        let _delivering = Delivering::start(self.subscription.id);
        let runtime = Arc::clone(&self.runtime);
        let reason = runtime
            .block_on(self.deliver_until_stopped())
            .unwrap_or(StreamStopReason::StoreClosed);
        self.end(reason);
    }

    async fn deliver_until_stopped(&mut self) -> StreamStopReason {
        loop {
            let Some(work) = self.next_work_now() else {
                // An offer or stop request between the check above and this
                // wait leaves a permit, so it is not missed.
                self.subscription.wake.notified().await;
                continue;
            };
            if let Outcome::Stop(reason) = self.process(work).await {
                return reason;
            }
        }
    }

    async fn process(&mut self, work: Work) -> Outcome {
        match work {
            Work::Stop(reason) => Outcome::Stop(reason),
            Work::Batch(batch) => self.deliver(Batch::Shared(batch)).await,
            Work::Backlog(backlog) => self.read_backlog(backlog).await,
        }
    }

    /// The next thing to do, if there is one now.
    fn next_work_now(&self) -> Option<Work> {
        loop {
            // The state's lock ends with this statement: re-joining takes
            // the registry's lock first.
            let work = work_in(&mut lock(&self.subscription.state));
            match work {
                Ok(work) => return work,
                Err(Lagging) => self.rejoin_live(),
            }
        }
    }

    /// Takes the current head under the registry lock (or, for a stopping
    /// stream, the head it stops at), so that every later publication is
    /// queued and everything before it is read from storage.
    fn rejoin_live(&self) {
        let core = self.core.upgrade();
        let registry = core.as_ref().map(|core| core.registry());
        let mut state = lock(&self.subscription.state);
        if !state.lagging {
            return;
        }
        let head = match (&state.stop, &registry) {
            (Some(stop), _) => stop.through,
            (None, Some(registry)) => registry.last_published,
            (None, None) => {
                state.abandon = true;
                return;
            }
        };
        if head > state.enqueued_through {
            state.backlog = Some(Backlog {
                after: state.enqueued_through,
                through: head,
            });
            state.enqueued_through = head;
        }
        state.lagging = false;
    }

    async fn read_backlog(&mut self, backlog: Backlog) -> Outcome {
        let Some(log) = self.subscription.log.upgrade() else {
            return Outcome::Stop(StreamStopReason::StoreClosed);
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
            Err(error) => return self.backlog_read_failed(error).await,
        };
        self.backoff.reset();
        let scanned_through = page.scanned_through;
        for batch in page.batches {
            if let Outcome::Stop(reason) = self.deliver(Batch::Own(batch)).await {
                return Outcome::Stop(reason);
            }
        }
        self.handled_through = self.handled_through.max(scanned_through);
        let finished = scanned_through >= backlog.through;
        {
            let mut state = lock(&self.subscription.state);
            if state.abandon {
                return Outcome::Stop(state.stop_reason());
            }
            state.backlog = (!finished).then_some(Backlog {
                after: scanned_through,
                through: backlog.through,
            });
        }
        self.advance_durable_cursor(scanned_through);
        if finished && let Some(registration) = self.registration.take() {
            let _ = registration.send(Ok(()));
        }
        Outcome::Continue
    }

    /// A read from storage failed: a registration fails, a stopping stream
    /// stops, a running stream retries after a backoff.
    async fn backlog_read_failed(&mut self, error: EventStoreError) -> Outcome {
        let stream_id = self.subscription.id;
        let reason = StreamStopReason::ReadFailed {
            message: error.to_string(),
        };
        if self.registration.is_some() {
            let name = self
                .subscription
                .durable_name
                .as_deref()
                .unwrap_or_default();
            self.replay_error = Some(EventStoreError::backend(format!(
                "durable stream `{name}` could not replay: {error}"
            )));
            return Outcome::Stop(reason);
        }
        if lock(&self.subscription.state).stopping() {
            tracing::warn!(stream_id, %error, "reading committed batches failed while the stream was stopping; it stops without them");
            return Outcome::Stop(reason);
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(
            stream_id,
            %error,
            retry_in_ms = delay.as_millis() as u64,
            "reading committed batches failed; retrying"
        );
        // A stop request ends the wait early; the next round sees it.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.subscription.wake.notified() => {}
        }
        Outcome::Continue
    }

    /// Filters `batch` for this stream and hands it to the handler.
    async fn deliver(&mut self, batch: Batch) -> Outcome {
        let (records, from_storage): (&[EventRecord], bool) = match &batch {
            Batch::Own(records) => (records, true),
            Batch::Shared(records) => (records, false),
        };
        let Some(last) = records.last().map(|record| record.sequence_number) else {
            return Outcome::Continue;
        };
        if last <= self.handled_through {
            return Outcome::Continue;
        }
        let handled_through = self.handled_through;
        let query = self.subscription.query.as_ref();
        let wanted = |record: &EventRecord| {
            record.sequence_number > handled_through
                && query.is_none_or(|query| query.matches_record(record))
        };
        let events: Vec<EventRecord> = match batch {
            Batch::Own(mut records) => {
                records.retain(wanted);
                records
            }
            // The last stream to take a published batch takes the batch
            // itself; the others take copies.
            Batch::Shared(records) => match Arc::try_unwrap(records) {
                Ok(mut records) => {
                    records.retain(wanted);
                    records
                }
                Err(records) => records
                    .iter()
                    .filter(|record| wanted(record))
                    .cloned()
                    .collect(),
            },
        };
        let Some(first) = events.first().map(|record| record.sequence_number) else {
            self.handled_through = last;
            return Outcome::Continue;
        };
        if from_storage {
            // Between the batches of a page read from storage (a published
            // batch was taken off the queue just now, after this check).
            let state = lock(&self.subscription.state);
            if state.abandon {
                return Outcome::Stop(state.stop_reason());
            }
        }
        match run_handler(&self.handle, events, self.stop_signal.clone()).await {
            Ok(()) => {
                self.handled_through = last;
                self.advance_durable_cursor(last);
                Outcome::Continue
            }
            Err(message) => self.handler_failed(first, last, message),
        }
    }

    fn handler_failed(&mut self, first: u64, last: u64, message: String) -> Outcome {
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
        Outcome::Stop(StreamStopReason::HandlerFailed {
            first_sequence_number: first,
            message,
        })
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

    /// Ends the stream: no more publications, the durable name released
    /// (after its last cursor is written), the registration answered, the
    /// status reported, and the delivery forgotten, in that order.
    fn end(mut self, reason: StreamStopReason) {
        let subscription = &self.subscription;
        let core = self.core.upgrade();
        if let Some(core) = &core {
            core.registry()
                .subscriptions
                .retain(|registered| registered.id != subscription.id);
        }
        lock(&subscription.state).abandon = true;
        if let Some(name) = &subscription.durable_name {
            let log = subscription.log.upgrade();
            match &core {
                Some(core) => core.release_name(log.as_deref(), name),
                None => {
                    if let Some(log) = log {
                        log.close_durable_stream(name);
                    }
                }
            }
        }
        // Only now is the durable name free, so a caller that sees the error
        // can register the name again at once.
        if let Some(registration) = self.registration.take() {
            let error = self.replay_error.take().unwrap_or_else(|| {
                EventStoreError::backend(format!(
                    "stream {} stopped before its replay finished ({reason})",
                    subscription.id
                ))
            });
            let _ = registration.send(Err(error));
        }
        subscription.status.finish(reason);
        if let Some(core) = core {
            core.delivery_ended(subscription.id);
        }
    }
}
