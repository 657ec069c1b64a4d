//! The threads that run streams' deliveries: a few shared workers, and a
//! watch that gives a stream whose handler holds its worker a thread of its
//! own.
//!
//! Waking a parked thread costs the waker a system call and the woken
//! thread a context switch (several microseconds each on a virtual machine),
//! so a batch for a hundred streams that each wait on their own thread costs
//! a hundred of both. A worker instead runs stream after stream: the batch
//! costs one wake-up per worker. Each stream keeps its own tokio runtime,
//! entered by whichever thread runs it, so handlers keep their timers, I/O
//! and spawned tasks, and streams stay isolated from each other's runtimes.
//!
//! A handler that blocks (or awaits for long) holds its worker. While streams
//! wait for a worker and every worker has been in one stream's turn for
//! [`BLOCKING_TURN`], the watch hands that worker over to its stream (the
//! stream keeps the thread, as a thread of its own) and starts a new worker
//! in its place: a blocking handler delays other streams by at most about
//! twice that time (the watch looks every `BLOCKING_TURN`), once, and from
//! then on only itself. Workers never read the clock or take a lock for
//! this: the watch tells a turn that lasts from one of its looks to the next
//! by its number. A stream whose
//! handler leaves spawned tasks running gets a thread of its own too, which
//! keeps driving its runtime between batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::delivery::take_turn;
use super::subscription::Subscription;
use crate::backend::sync::lock;

/// How long one stream's turn may hold a worker while other streams wait
/// before the worker is handed over to that stream and replaced.
pub(super) const BLOCKING_TURN: Duration = Duration::from_millis(2);

/// A turn ends after this much work, so that a stream with a long backlog
/// takes turns with the others.
pub(super) const TURN_BUDGET: Duration = Duration::from_micros(500);

#[derive(Debug)]
pub(super) struct Pool {
    state: Mutex<PoolState>,
    /// Idle workers wait here.
    work: Condvar,
    /// The watch waits here.
    watch: Condvar,
    /// How many workers the pool keeps.
    target_workers: usize,
}

#[derive(Debug)]
struct PoolState {
    /// Streams with work, waiting for a worker, each at most once.
    ready: VecDeque<Arc<Subscription>>,
    /// Workers of the pool (a worker handed over to a stream no longer
    /// counts).
    workers: usize,
    /// Workers waiting for work.
    idle: usize,
    /// Idle workers notified and not yet awake.
    waking: usize,
    /// The workers of the pool, as the watch sees them.
    slots: Vec<Arc<WorkerSlot>>,
    next_worker: u64,
    watch: Watch,
    closed: bool,
}

/// What the watch sees of one worker, without taking the pool's lock on
/// the worker's way: the number of its turn in progress (0: none; each
/// worker counts its turns), or [`HANDED_OVER`]. The worker ends a turn by
/// swapping in 0, the watch hands it over by swapping in `HANDED_OVER` for
/// the number it saw at its previous look: only one of them wins.
#[derive(Debug, Default)]
struct WorkerSlot {
    turn: AtomicU64,
}

const HANDED_OVER: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    NotStarted,
    Looking,
    Parked,
}

/// What a worker does after a stream's turn.
pub(super) enum AfterTurn {
    /// Go on with the next stream.
    Next,
    /// This thread now belongs to the stream that had the turn.
    HandedOver,
}

impl Pool {
    pub(super) fn new() -> Self {
        // One worker per core, up to four: a batch for many streams spreads
        // over the cores, and a store keeps few threads.
        let target_workers = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(1, 4);
        Self {
            state: Mutex::new(PoolState {
                ready: VecDeque::new(),
                workers: 0,
                idle: 0,
                waking: 0,
                slots: Vec::new(),
                next_worker: 1,
                watch: Watch::NotStarted,
                closed: false,
            }),
            work: Condvar::new(),
            watch: Condvar::new(),
            target_workers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        lock(&self.state)
    }

    /// Makes sure a worker exists, so that a stream registered now will be
    /// delivered; fails when no thread can be started.
    pub(super) fn ensure_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let mut state = self.lock();
        if state.workers > 0 {
            return Ok(());
        }
        self.start_worker(&mut state)
    }

    /// Queues `subscriptions`, which have work and were not queued.
    pub(super) fn schedule_all(self: &Arc<Self>, subscriptions: Vec<Arc<Subscription>>) {
        if subscriptions.is_empty() {
            return;
        }
        let mut state = self.lock();
        let available = state.idle.saturating_sub(state.waking);
        let waiting = subscriptions.len() > available;
        state.ready.extend(subscriptions);
        // One wake-up: the woken worker wakes the next if more wait.
        let wake = available > 0;
        if wake {
            state.waking += 1;
        } else if state.workers < self.target_workers
            && let Err(error) = self.start_worker(&mut state)
        {
            tracing::error!(%error, "cannot start a stream delivery worker");
        }
        // Streams wait for busy workers: the watch looks until they are taken.
        let watch = waiting && state.watch == Watch::Parked;
        if watch {
            state.watch = Watch::Looking;
        }
        // Woken after the lock is released, so that they do not wake only
        // to wait for it.
        drop(state);
        if wake {
            self.work.notify_one();
        }
        if watch {
            self.watch.notify_one();
        }
    }

    /// Stops the workers once the queued streams are delivered.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.work.notify_all();
        self.watch.notify_all();
    }

    fn start_worker(self: &Arc<Self>, state: &mut PoolState) -> std::io::Result<()> {
        let id = state.next_worker;
        let pool = Arc::clone(self);
        let slot = Arc::new(WorkerSlot::default());
        let own_slot = Arc::clone(&slot);
        std::thread::Builder::new()
            .name(format!("factstr-stream-worker-{id}"))
            .spawn(move || pool.run_worker(&own_slot))?;
        state.slots.push(slot);
        state.next_worker += 1;
        state.workers += 1;
        if state.watch == Watch::NotStarted {
            let pool = Arc::clone(self);
            match std::thread::Builder::new()
                .name("factstr-stream-watch".to_owned())
                .spawn(move || pool.keep_watch())
            {
                Ok(_) => state.watch = Watch::Looking,
                Err(error) => {
                    tracing::error!(%error, "cannot start the stream delivery watch; a blocking handler may delay other streams");
                }
            }
        }
        Ok(())
    }

    /// A worker's life: takes queued streams in turn until the pool closes
    /// with nothing queued, or the worker is handed over to a stream.
    fn run_worker(self: Arc<Self>, slot: &Arc<WorkerSlot>) {
        let mut turns: u64 = 0;
        let mut state = self.lock();
        loop {
            let Some(subscription) = state.ready.pop_front() else {
                if state.closed {
                    state.workers -= 1;
                    state.slots.retain(|other| !Arc::ptr_eq(other, slot));
                    return;
                }
                state.idle += 1;
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle -= 1;
                state.waking = state.waking.saturating_sub(1);
                continue;
            };
            // More streams wait: wake the next idle worker, so that the
            // wake-ups are spread over the workers.
            let wake = !state.ready.is_empty() && state.idle > state.waking;
            if wake {
                state.waking += 1;
            }
            drop(state);
            if wake {
                self.work.notify_one();
            }

            turns += 1;
            slot.turn.store(turns, Ordering::SeqCst);
            let end_turn = || slot.turn.swap(0, Ordering::SeqCst) == HANDED_OVER;
            match take_turn(&subscription, end_turn) {
                AfterTurn::Next => state = self.lock(),
                AfterTurn::HandedOver => return,
            }
        }
    }

    /// The watch: while streams wait and every worker is busy, hands the
    /// worker whose turn has lasted from one look to the next (at least
    /// [`BLOCKING_TURN`]) over to its stream and starts another. It looks
    /// only while streams wait: [`schedule_all`](Self::schedule_all) wakes it
    /// when it queues more streams than there are idle workers.
    fn keep_watch(self: Arc<Self>) {
        let mut state = self.lock();
        // The turn each worker was in at the previous look.
        let mut seen: Vec<(Arc<WorkerSlot>, u64)> = Vec::new();
        loop {
            if state.closed && state.workers == 0 && state.ready.is_empty() {
                state.watch = Watch::NotStarted;
                return;
            }
            if !state.ready.is_empty() && state.idle == 0 {
                let blocked = seen.iter().find(|(slot, turn)| {
                    *turn != 0
                        && slot
                            .turn
                            .compare_exchange(
                                *turn,
                                HANDED_OVER,
                                Ordering::SeqCst,
                                Ordering::SeqCst,
                            )
                            .is_ok()
                });
                if let Some((slot, _)) = blocked {
                    let slot = Arc::clone(slot);
                    state.slots.retain(|other| !Arc::ptr_eq(other, &slot));
                    state.workers -= 1;
                    tracing::debug!(
                        "a stream's turn holds its worker; the stream keeps the thread and a new worker starts"
                    );
                    if let Err(error) = self.start_worker(&mut state) {
                        tracing::error!(%error, "cannot start a stream delivery worker");
                    }
                    seen.retain(|(other, _)| !Arc::ptr_eq(other, &slot));
                    continue;
                }
            }
            seen.clear();
            seen.extend(
                state
                    .slots
                    .iter()
                    .map(|slot| (Arc::clone(slot), slot.turn.load(Ordering::SeqCst))),
            );
            if state.ready.is_empty() {
                state.watch = Watch::Parked;
                state = self
                    .watch
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            } else {
                state.watch = Watch::Looking;
                state = self
                    .watch
                    .wait_timeout(state, BLOCKING_TURN)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}
