//! One registered stream: its query, its queue of published batches,
//! whether it was asked to stop, and where its delivery runs.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{Notify, watch};

use super::CommittedLog;
use super::MAX_QUEUED_EVENTS;
use super::delivery::Delivery;
use super::handler::StreamStopSignal;
use super::pool::Pool;
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
    /// Wakes a delivery waiting on its own thread (or in a retry) when there
    /// is work or it must stop.
    pub(super) wake: Notify,
    /// The workers that deliver the stream while it has no thread of its own.
    pub(super) pool: Arc<Pool>,
    /// Set once the stream is asked to stop; handler calls see it as their
    /// `StreamStopSignal`.
    pub(super) stop_requested: watch::Sender<bool>,
    pub(super) status: Arc<StreamStatus>,
}

#[derive(Debug)]
pub(super) struct DeliveryState {
    pub(super) queue: VecDeque<Arc<Vec<EventRecord>>>,
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
    pub(super) runner: Runner,
    /// The delivery, while it waits for its next turn on the pool (or for
    /// its own thread to take it).
    pub(super) delivery: Option<Delivery>,
}

/// Where a stream's delivery runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Runner {
    /// On the pool, with nothing to do.
    Idle,
    /// On the pool, queued for a turn or in one.
    Queued,
    /// On a thread of its own, woken through `wake`.
    OwnThread,
}

thread_local! {
    /// The stream whose delivery runs on this thread (0: none).
    static DELIVERING: Cell<u64> = const { Cell::new(0) };
}

/// Marks the calling thread as delivering a stream until dropped.
pub(super) struct Delivering(u64);

impl Delivering {
    pub(super) fn start(stream_id: u64) -> Self {
        Self(DELIVERING.replace(stream_id))
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.set(self.0);
    }
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
            runner: Runner::Idle,
            delivery: None,
        }
    }

    /// Whether the delivery has something to do now.
    pub(super) fn has_work(&self) -> bool {
        self.abandon
            || self.backlog.is_some()
            || !self.queue.is_empty()
            || self.lagging
            || self.stop.is_some()
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
    /// arrive in commit order. `true` when the stream waits on the pool
    /// with nothing to do: the caller schedules it.
    #[must_use]
    pub(super) fn offer(self: &Arc<Self>, batch: &Arc<Vec<EventRecord>>) -> bool {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return false;
        };
        let mut state = lock(&self.state);
        if state.stop.is_some() || state.lagging || last.sequence_number <= state.enqueued_through {
            return false;
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
        match state.runner {
            Runner::Idle => {
                state.runner = Runner::Queued;
                true
            }
            Runner::Queued => false,
            Runner::OwnThread => {
                drop(state);
                self.wake.notify_one();
                false
            }
        }
    }

    /// Asks the stream to deliver what was committed up to `through` and
    /// then stop for `reason`. The first request wins.
    pub(super) fn request_stop(self: &Arc<Self>, reason: StreamStopReason, through: u64) {
        let mut state = lock(&self.state);
        state.stop.get_or_insert(StopRequest { reason, through });
        self.stop_requested.send_replace(true);
        self.wake_delivery(state);
    }

    /// Makes the stream stop after its handler call in progress.
    pub(super) fn abandon(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        state.abandon = true;
        self.stop_requested.send_replace(true);
        self.wake_delivery(state);
    }

    /// Gets the delivery going after `state` changed: a turn on the pool, or
    /// a wake-up of its thread (or of a retry's wait in a turn).
    pub(super) fn wake_delivery(self: &Arc<Self>, mut state: MutexGuard<'_, DeliveryState>) {
        let schedule = state.runner == Runner::Idle;
        if schedule {
            state.runner = Runner::Queued;
        }
        drop(state);
        self.wake.notify_one();
        if schedule {
            self.pool.schedule_all(vec![Arc::clone(self)]);
        }
    }

    /// What this stream's handler calls see as their stop signal.
    pub(super) fn stop_signal(&self) -> StreamStopSignal {
        StreamStopSignal::new(self.stop_requested.subscribe())
    }

    /// Whether the calling thread is delivering this stream (running its
    /// handler, or the end of the stream).
    pub(super) fn delivering_here(&self) -> bool {
        DELIVERING.get() == self.id
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
