//! Calls that finish off the JavaScript thread, and how their results get back.
//!
//! JavaScript gives every asynchronous call an id and keeps its `settle`
//! function under that id. The work runs on the addon's own threads: short
//! store calls (`appendAsync`, `queryAsync`, `appendIfAsync`) on a small
//! pool, work that may wait on JavaScript or for seconds (durable
//! registration, whose replay runs handlers on the JS thread; closing a
//! store, which waits for its streams) on a thread of its own. Each result,
//! a JSON envelope, goes into [`Settlements`]. JavaScript takes the results
//! in slices ([`NativeCalls::take`]) and settles one slice per turn of the
//! event loop, so thousands of completions never hold the loop in one turn
//! (libuv's work queue hands all finished work to one turn). While it finds
//! results, JavaScript comes back on the next turn by itself; only once it
//! found none does the next result wake it, with one threadsafe call. (Node
//! runs threadsafe calls queued meanwhile in the same turn, up to 1,000, so
//! waking it once per slice would chain slices into one long turn again.)
//!
//! The wake function is weak (it never keeps the process alive); the
//! JavaScript side keeps the loop alive while calls are waiting.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use factstr::EventStoreError;
use napi::Status;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::{lock, wire};

/// The JS function that drains settled calls: `() => void`, weak.
pub(crate) type WakeJs = ThreadsafeFunction<(), (), (), Status, false, true>;

/// Settled calls waiting for JavaScript to take them.
pub(crate) struct Settlements {
    state: Mutex<Settled>,
    wake: WakeJs,
}

#[derive(Default)]
struct Settled {
    ready: VecDeque<(i64, String)>,
    /// Whether JavaScript is taking results: woken, and not yet finding the
    /// queue empty.
    draining: bool,
}

/// At most this much envelope text goes to JavaScript in one slice (it is
/// parsed in one `JSON.parse`), unless a single envelope is larger.
const MAX_SLICE_BYTES: usize = 256 * 1024;

impl Settlements {
    /// Hands the result of call `id` to JavaScript.
    pub(crate) fn settle(&self, id: i64, envelope: String) {
        let wake = {
            let mut state = lock(&self.state);
            state.ready.push_back((id, envelope));
            !std::mem::replace(&mut state.draining, true)
        };
        if wake {
            // `Closing` once the JS environment is gone (process exit): nobody
            // is left to settle for.
            let _ = self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn take(&self, max_calls: usize) -> Option<String> {
        let mut state = lock(&self.state);
        if state.ready.is_empty() {
            state.draining = false;
            return None;
        }
        let mut out = String::from("[");
        let mut taken = 0;
        while taken < max_calls.max(1) && out.len() < MAX_SLICE_BYTES {
            let Some((id, envelope)) = state.ready.pop_front() else {
                break;
            };
            if taken > 0 {
                out.push(',');
            }
            out.push('[');
            out.push_str(&id.to_string());
            out.push(',');
            out.push_str(&envelope);
            out.push(']');
            taken += 1;
        }
        drop(state);
        out.push(']');
        Some(out)
    }
}

/// The settlement queue of one JavaScript environment.
#[napi]
pub struct NativeCalls {
    settlements: Arc<Settlements>,
}

#[napi]
impl NativeCalls {
    /// `wake` is called (with no arguments) when settled calls are waiting.
    #[napi(constructor)]
    pub fn new(wake: WakeJs) -> Self {
        Self {
            settlements: Arc::new(Settlements {
                state: Mutex::new(Settled::default()),
                wake,
            }),
        }
    }

    /// Up to `maxCalls` settled calls as JSON text, `[[id, envelope], ...]`;
    /// call again on the next turn. `null` when none are waiting: then the
    /// next settled call wakes JavaScript again.
    #[napi]
    pub fn take(&self, max_calls: u32) -> Option<String> {
        self.settlements
            .take(usize::try_from(max_calls).unwrap_or(usize::MAX))
    }
}

impl NativeCalls {
    pub(crate) fn settlements(&self) -> Arc<Settlements> {
        Arc::clone(&self.settlements)
    }
}

/// Work that produces the envelope of call `id`.
struct Call {
    id: i64,
    settlements: Arc<Settlements>,
    work: Box<dyn FnOnce() -> String + Send>,
}

impl Call {
    /// Runs the work and settles the call, also when the work panics (a
    /// panic in the store must not leave a promise pending forever).
    fn run(self) {
        let envelope = std::panic::catch_unwind(AssertUnwindSafe(self.work)).unwrap_or_else(|_| {
            wire::error(&EventStoreError::backend(
                "the call panicked; see the process's tracing output",
            ))
        });
        self.settlements.settle(self.id, envelope);
    }
}

/// Threads for short store calls, shared by every store and environment of
/// the process. As many as libuv's default pool (4), or one per core where
/// there are more, so SQLite and PostgreSQL group as many concurrent appends
/// into one commit as before.
struct Pool {
    queue: Mutex<Queue>,
    queued: Condvar,
}

#[derive(Default)]
struct Queue {
    calls: VecDeque<Call>,
    /// Workers waiting for a call: a wake-up is a system call, made only
    /// when one of them can take the call.
    idle: usize,
}

static POOL: OnceLock<Result<Arc<Pool>, String>> = OnceLock::new();

fn pool() -> Result<&'static Arc<Pool>, EventStoreError> {
    POOL.get_or_init(start_pool)
        .as_ref()
        .map_err(|message| EventStoreError::backend(message.clone()))
}

fn start_pool() -> Result<Arc<Pool>, String> {
    let size = std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(1)
        .max(4);
    let pool = Arc::new(Pool {
        queue: Mutex::new(Queue::default()),
        queued: Condvar::new(),
    });
    let mut started = 0;
    let mut failure = None;
    for number in 0..size {
        let worker = Arc::clone(&pool);
        match std::thread::Builder::new()
            .name(format!("factstr-node-{number}"))
            .spawn(move || worker.work())
        {
            Ok(_) => started += 1,
            Err(error) => failure = Some(error),
        }
    }
    match (started, failure) {
        (0, Some(error)) => Err(format!("cannot start the addon's threads: {error}")),
        _ => Ok(pool),
    }
}

impl Pool {
    fn work(&self) {
        loop {
            let call = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(call) = queue.calls.pop_front() {
                        break call;
                    }
                    queue.idle += 1;
                    queue = self
                        .queued
                        .wait(queue)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    queue.idle -= 1;
                }
            };
            call.run();
        }
    }
}

/// Runs `work` on the pool and settles call `id` with its envelope.
pub(crate) fn submit(
    settlements: &Arc<Settlements>,
    id: i64,
    work: impl FnOnce() -> String + Send + 'static,
) {
    let call = Call {
        id,
        settlements: Arc::clone(settlements),
        work: Box::new(work),
    };
    match pool() {
        Ok(pool) => {
            let idle = {
                let mut queue = lock(&pool.queue);
                queue.calls.push_back(call);
                queue.idle
            };
            if idle > 0 {
                pool.queued.notify_one();
            }
        }
        Err(error) => settlements.settle(id, wire::error(&error)),
    }
}

/// Runs `work` on a thread of its own (it may wait long, or on JavaScript)
/// and settles call `id` with its envelope.
pub(crate) fn spawn(
    settlements: &Arc<Settlements>,
    id: i64,
    name: &str,
    work: impl FnOnce() -> String + Send + 'static,
) {
    let call = Call {
        id,
        settlements: Arc::clone(settlements),
        work: Box::new(work),
    };
    let settlements = Arc::clone(settlements);
    if let Err(error) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || call.run())
    {
        settlements.settle(
            id,
            wire::error(&EventStoreError::backend(format!(
                "cannot start a thread for the call: {error}"
            ))),
        );
    }
}
