//! Running the store's work on its runtime, for async and sync callers.
//!
//! Every database operation runs as a task on the store's own runtime: its
//! connections belong to that runtime's reactor, so the caller's runtime
//! (of any flavour, or none) never drives them and may be shut down or
//! blocked without stalling the store. Async callers await the task
//! ([`spawned`]); the sync API waits for the same future on the calling
//! thread ([`wait`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use factstr::EventStoreError;
use tokio::runtime::Handle;

/// Work of the store that an async caller awaits.
pub(crate) type StoreWork<T> =
    Pin<Box<dyn Future<Output = Result<T, EventStoreError>> + Send + 'static>>;

/// Starts `work` on the store's runtime now; the returned future completes
/// with its result. Awaiting it never blocks a thread.
pub(crate) fn spawned<T: Send + 'static>(
    runtime: &Handle,
    work: impl Future<Output = Result<T, EventStoreError>> + Send + 'static,
) -> StoreWork<T> {
    let task = runtime.spawn(work);
    Box::pin(async move {
        task.await.unwrap_or_else(|_| {
            Err(EventStoreError::backend(
                "the store was closed before the operation finished",
            ))
        })
    })
}

/// Runs `work` on the store's runtime and waits for its result on the
/// calling thread (see [`wait`]).
pub(crate) fn run_on<T: Send + 'static>(
    runtime: &Handle,
    work: impl Future<Output = Result<T, EventStoreError>> + Send + 'static,
) -> Result<T, EventStoreError> {
    wait(spawned(runtime, work))
}

/// Runs `work` for a sync caller: on the calling thread when it is outside
/// any tokio runtime (the store's runtime drives the connections' I/O, so
/// the answer needs one thread hand-off instead of two), otherwise as
/// [`run_on`] does, since a thread inside a runtime must not enter another.
pub(crate) fn run_for_caller<T: Send + 'static>(
    runtime: &Handle,
    work: impl Future<Output = Result<T, EventStoreError>> + Send + 'static,
) -> Result<T, EventStoreError> {
    if Handle::try_current().is_err() {
        return runtime.block_on(work);
    }
    run_on(runtime, work)
}

/// Waits on the calling thread for a future whose work runs elsewhere (on
/// the store's runtime): the thread sleeps until the future is woken.
///
/// Works from any thread, inside a tokio runtime of either flavour and
/// inside another executor's `block_on` (it enters no executor and no
/// runtime, so neither can refuse it).
pub(crate) fn wait<T>(future: impl Future<Output = T>) -> T {
    // Unconstrained: inside a tokio task whose cooperative budget is spent,
    // tokio's channels and join handles would answer `Pending` until the
    // task yields, which a thread waiting here never does.
    let mut future = std::pin::pin!(tokio::task::unconstrained(future));
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Wakes a thread sleeping in [`wait`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
