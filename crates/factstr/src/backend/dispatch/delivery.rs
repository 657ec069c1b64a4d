//! The delivery of one stream, on its own thread: queued batches, reads
//! from storage, the handler, durable cursors, and the end of the stream.

use futures::channel::oneshot;
use std::sync::{Arc, Weak};

use super::handler::{StreamRuntime, run_handler};
use super::log::check_page;
use super::registry::DispatchCore;
use super::subscription::{Backlog, Subscription};
use super::{BatchReadRequest, READ_PAGE_EVENTS};
use crate::backend::Backoff;
use crate::backend::sync::lock;
use crate::{EventRecord, EventStoreError, HandleStream, StreamStopReason};

pub(super) struct Delivery {
    pub(super) core: Weak<DispatchCore>,
    pub(super) subscription: Arc<Subscription>,
    pub(super) handle: HandleStream,
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
    Batch(Arc<[EventRecord]>),
    Stop(StreamStopReason),
}

enum Outcome {
    Continue,
    Stop(StreamStopReason),
}

impl Delivery {
    /// The thread's body: delivers on `runtime` until the stream stops, then
    /// ends it.
    pub(super) fn run(mut self, runtime: StreamRuntime) {
        let _ = self
            .subscription
            .delivery_thread
            .set(std::thread::current().id());
        let reason = runtime
            .block_on(self.deliver_until_stopped())
            .unwrap_or(StreamStopReason::StoreClosed);
        // Tasks the handler spawned end with the stream.
        drop(runtime);
        self.end(reason);
    }

    async fn deliver_until_stopped(&mut self) -> StreamStopReason {
        loop {
            let outcome = match self.next_work().await {
                Work::Stop(reason) => return reason,
                Work::Batch(batch) => self.deliver(&batch).await,
                Work::Backlog(backlog) => self.read_backlog(backlog).await,
            };
            if let Outcome::Stop(reason) = outcome {
                return reason;
            }
        }
    }

    async fn next_work(&self) -> Work {
        let subscription = &self.subscription;
        loop {
            let lagging = {
                let mut state = lock(&subscription.state);
                if state.abandon {
                    return Work::Stop(state.stop_reason());
                }
                if let Some(backlog) = state.backlog {
                    return Work::Backlog(backlog);
                }
                if let Some(batch) = state.queue.pop_front() {
                    state.queued_events -= batch.len();
                    return Work::Batch(batch);
                }
                if !state.lagging
                    && let Some(stop) = &state.stop
                {
                    return Work::Stop(stop.reason.clone());
                }
                state.lagging
            };
            if lagging {
                self.rejoin_live();
                continue;
            }
            // An offer or stop request between the check above and this
            // wait leaves a permit, so it is not missed.
            subscription.wake.notified().await;
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
        for batch in &page.batches {
            if let Outcome::Stop(reason) = self.deliver(batch).await {
                return Outcome::Stop(reason);
            }
        }
        self.handled_through = self.handled_through.max(page.scanned_through);
        let finished = page.scanned_through >= backlog.through;
        {
            let mut state = lock(&self.subscription.state);
            if state.abandon {
                return Outcome::Stop(state.stop_reason());
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
    async fn deliver(&mut self, batch: &[EventRecord]) -> Outcome {
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
        let Some(first) = events.first().map(|record| record.sequence_number) else {
            self.handled_through = last;
            return Outcome::Continue;
        };
        {
            let state = lock(&self.subscription.state);
            if state.abandon {
                return Outcome::Stop(state.stop_reason());
            }
        }
        match run_handler(&self.handle, events, self.subscription.stop_signal()).await {
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
