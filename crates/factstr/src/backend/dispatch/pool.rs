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
//! twice that time, once, and from then on only itself. A stream whose
//! handler leaves spawned tasks running gets a thread of its own too, which
//! keeps driving its runtime between batches.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::delivery::take_turn;
use super::subscription::Subscription;
use crate::backend::sync::lock;

/// How long one stream's turn may hold a worker while other streams wait
/// before the worker is handed over to that stream and replaced.
pub(super) const BLOCKING_TURN: Duration = Duration::from_millis(2);

/// A turn ends after this much work, so that a stream with a long backlog
/// takes turns with the others.
pub(super) const TURN_BUDGET: Duration = Duration::from_micros(500);

/// How long the watch keeps looking after the last turn before it parks.
const WATCH_LINGER: Duration = Duration::from_millis(200);

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
    /// The turns in progress.
    turns: Vec<Turn>,
    next_worker: u64,
    watch: Watch,
    last_turn: Instant,
    closed: bool,
}

#[derive(Debug)]
struct Turn {
    worker: u64,
    started: Instant,
    /// The watch gave this worker's place to a new one.
    handed_over: bool,
}

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
        let target_workers = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(1, 4);
        Self {
            state: Mutex::new(PoolState {
                ready: VecDeque::new(),
                workers: 0,
                idle: 0,
                waking: 0,
                turns: Vec::new(),
                next_worker: 1,
                watch: Watch::NotStarted,
                last_turn: Instant::now(),
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

    /// Queues `subscription`, which has work and was not queued.
    pub(super) fn schedule(self: &Arc<Self>, subscription: Arc<Subscription>) {
        let mut state = self.lock();
        state.ready.push_back(subscription);
        if state.idle > state.waking {
            state.waking += 1;
            self.work.notify_one();
        } else if state.workers < self.target_workers
            && let Err(error) = self.start_worker(&mut state)
        {
            tracing::error!(%error, "cannot start a stream delivery worker");
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
        std::thread::Builder::new()
            .name(format!("factstr-stream-worker-{id}"))
            .spawn(move || pool.run_worker(id))?;
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
    fn run_worker(self: Arc<Self>, id: u64) {
        let mut state = self.lock();
        loop {
            let Some(subscription) = state.ready.pop_front() else {
                if state.closed {
                    state.workers -= 1;
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
            if !state.ready.is_empty() && state.idle > state.waking {
                state.waking += 1;
                self.work.notify_one();
            }
            let now = Instant::now();
            state.turns.push(Turn {
                worker: id,
                started: now,
                handed_over: false,
            });
            state.last_turn = now;
            if state.watch == Watch::Parked {
                self.watch.notify_one();
            }
            drop(state);

            match take_turn(&subscription, || self.end_turn(id)) {
                AfterTurn::Next => state = self.lock(),
                AfterTurn::HandedOver => return,
            }
        }
    }

    /// Ends worker `id`'s turn; `true` if the watch handed the worker over
    /// to the stream (the pool no longer counts it).
    fn end_turn(&self, id: u64) -> bool {
        let mut state = self.lock();
        let Some(at) = state.turns.iter().position(|turn| turn.worker == id) else {
            return false;
        };
        state.turns.swap_remove(at).handed_over
    }

    /// The watch: while streams wait and every worker is busy, hands the
    /// worker whose turn has lasted [`BLOCKING_TURN`] over to its stream and
    /// starts another.
    fn keep_watch(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if state.closed && state.turns.is_empty() && state.ready.is_empty() {
                state.watch = Watch::NotStarted;
                return;
            }
            if !state.ready.is_empty() && state.idle == 0 {
                let blocked = state.turns.iter_mut().find(|turn| {
                    !turn.handed_over && now.duration_since(turn.started) >= BLOCKING_TURN
                });
                if let Some(turn) = blocked {
                    turn.handed_over = true;
                    let worker = turn.worker;
                    state.workers -= 1;
                    tracing::debug!(
                        worker,
                        "a stream's turn holds its worker; the stream keeps the thread and a new worker starts"
                    );
                    if let Err(error) = self.start_worker(&mut state) {
                        tracing::error!(%error, "cannot start a stream delivery worker");
                    }
                    continue;
                }
            }
            let active = !state.turns.is_empty()
                || !state.ready.is_empty()
                || now.duration_since(state.last_turn) < WATCH_LINGER;
            if active {
                state.watch = Watch::Looking;
                state = self
                    .watch
                    .wait_timeout(state, BLOCKING_TURN)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            } else {
                state.watch = Watch::Parked;
                state = self
                    .watch
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}
