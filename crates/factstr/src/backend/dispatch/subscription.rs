//! One registered stream: its query, its queue of published batches and
//! whether it was asked to stop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{Notify, watch};

use super::CommittedLog;
use super::MAX_QUEUED_EVENTS;
use super::handler::StreamStopSignal;
use crate::backend::sync::lock;
use crate::stream::StreamStatus;
use crate::{EventQuery, EventRecord, StreamStopReason};

pub(super) struct Subscription {
    pub(super) id: u64,
    /// `None` delivers every event.
    pub(super) query: Option<EventQuery>,
    pub(super) durable_name: Option<String>,
    pub(super) log: Weak<dyn CommittedLog>,
    pub(super) state: Mutex<DeliveryState>,
    /// Wakes the delivery when there is work or it must stop.
    pub(super) wake: Notify,
    /// The thread that runs the handler, once it started.
    pub(super) delivery_thread: OnceLock<std::thread::ThreadId>,
    /// Set once the stream is asked to stop; handler calls see it as their
    /// `StreamStopSignal`.
    pub(super) stop_requested: watch::Sender<bool>,
    pub(super) status: Arc<StreamStatus>,
}

#[derive(Debug)]
pub(super) struct DeliveryState {
    pub(super) queue: VecDeque<Arc<[EventRecord]>>,
    pub(super) queued_events: usize,
    /// Everything published up to here is queued, delivered, or in `backlog`.
    pub(super) enqueued_through: u64,
    /// Publications after `enqueued_through` were not queued (the queue was
    /// full, or they did not follow it) and must be read from storage.
    pub(super) lagging: bool,
    /// Committed batches to read from storage before the queue.
    pub(super) backlog: Option<Backlog>,
    /// The stream was asked to stop: it delivers what was committed up to
    /// `through`, then stops.
    pub(super) stop: Option<StopRequest>,
    /// Stop after the handler call in progress, delivering nothing more.
    pub(super) abandon: bool,
}

#[derive(Clone, Debug)]
pub(super) struct StopRequest {
    pub(super) reason: StreamStopReason,
    pub(super) through: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Backlog {
    pub(super) after: u64,
    pub(super) through: u64,
}

impl DeliveryState {
    pub(super) fn new(enqueued_through: u64, backlog: Option<Backlog>) -> Self {
        Self {
            queue: VecDeque::new(),
            queued_events: 0,
            enqueued_through,
            lagging: false,
            backlog,
            stop: None,
            abandon: false,
        }
    }

    /// Why the stream stops when it stops now.
    pub(super) fn stop_reason(&self) -> StreamStopReason {
        self.stop
            .as_ref()
            .map_or(StreamStopReason::StoreClosed, |stop| stop.reason.clone())
    }

    /// Whether the stream was asked to stop, with or without delivering
    /// what is left.
    pub(super) fn stopping(&self) -> bool {
        self.stop.is_some() || self.abandon
    }
}

impl Subscription {
    /// Queues a published batch; called with the registry locked, so offers
    /// arrive in commit order.
    pub(super) fn offer(&self, batch: &Arc<[EventRecord]>) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let mut state = lock(&self.state);
        if state.stop.is_some() || state.lagging || last.sequence_number <= state.enqueued_through {
            return;
        }
        // A batch that does not follow what this stream has (another process
        // committed in between) or that overflows the queue is read from
        // storage instead.
        let follows = first.sequence_number == state.enqueued_through + 1;
        let overflowing =
            !state.queue.is_empty() && state.queued_events + batch.len() > MAX_QUEUED_EVENTS;
        if follows && !overflowing {
            state.queue.push_back(Arc::clone(batch));
            state.queued_events += batch.len();
            state.enqueued_through = last.sequence_number;
        } else {
            state.lagging = true;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Asks the stream to deliver what was committed up to `through` and
    /// then stop for `reason`. The first request wins.
    pub(super) fn request_stop(&self, reason: StreamStopReason, through: u64) {
        lock(&self.state)
            .stop
            .get_or_insert(StopRequest { reason, through });
        self.stop_requested.send_replace(true);
        self.wake.notify_one();
    }

    /// Makes the stream stop after its handler call in progress.
    pub(super) fn abandon(&self) {
        lock(&self.state).abandon = true;
        self.stop_requested.send_replace(true);
        self.wake.notify_one();
    }

    /// What this stream's handler calls see as their stop signal.
    pub(super) fn stop_signal(&self) -> StreamStopSignal {
        StreamStopSignal::new(self.stop_requested.subscribe())
    }

    /// Whether `thread` is this stream's delivery thread.
    pub(super) fn runs_on(&self, thread: std::thread::ThreadId) -> bool {
        self.delivery_thread.get() == Some(&thread)
    }
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
