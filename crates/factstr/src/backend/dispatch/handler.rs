//! Running a stream's handler: the stream's own runtime, errors and panics.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::watch;

use crate::{EventRecord, HandleStream};

tokio::task_local! {
    static CURRENT_STREAM_STOP: StreamStopSignal;
}

/// Tells a handler call whether its stream was asked to stop.
///
/// For store implementations that wrap a stream's handler and wait for
/// their backend inside the call (a durable stream confirming its claim,
/// say): while the backend is unreachable, the wrapper gives up once the
/// stream is asked to stop (unsubscribed, its store closing) instead of
/// holding the stream, and its durable name, until the backend is back.
/// The failed call stops the stream as any handler failure does; a durable
/// stream keeps its cursor before the batch.
///
/// A stream is asked to stop by [`EventStream::unsubscribe`](crate::EventStream::unsubscribe)
/// (or dropping its `EventStream`) and by closing its store; it then still
/// delivers the batches committed before, so a wrapper that can go on
/// without waiting should.
#[derive(Clone, Debug)]
pub struct StreamStopSignal {
    requested: watch::Receiver<bool>,
}

impl StreamStopSignal {
    pub(super) fn new(requested: watch::Receiver<bool>) -> Self {
        Self { requested }
    }

    /// The signal of the stream whose handler call is running: `Some` inside
    /// a handler call made by a [`StreamDispatcher`](super::StreamDispatcher)
    /// (while the handler creates its future and while the future runs, not
    /// in tasks it spawns), `None` anywhere else.
    pub fn current() -> Option<Self> {
        CURRENT_STREAM_STOP.try_with(Clone::clone).ok()
    }

    /// Whether the stream was asked to stop.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Completes once the stream is asked to stop (at once if it was).
    pub async fn requested(&self) {
        let mut requested = self.requested.clone();
        // An error means the stream is gone: it stops as well.
        let _ = requested.wait_for(|requested| *requested).await;
    }
}

/// A tokio runtime for one stream's thread: handler timers, I/O and spawned
/// tasks run there, so a handler that blocks stalls only its own stream.
///
/// It shuts down without waiting when dropped: tokio forbids dropping a
/// runtime inside an async context (a registration from inside a handler
/// that fails drops it there), and blocking tasks a handler left running
/// must not hold up the end of the stream.
pub(super) struct StreamRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    /// Kept, as asking the runtime for it takes a reference to its handle.
    metrics: tokio::runtime::RuntimeMetrics,
}

impl StreamRuntime {
    pub(super) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            metrics: runtime.metrics(),
            runtime: Some(runtime),
        })
    }

    pub(super) fn block_on<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.block_on(future))
    }

    /// Runs `future` to completion on this runtime from the calling thread:
    /// first one poll with the runtime entered (most turns complete there,
    /// without the cost of taking over the runtime's scheduler), then
    /// `block_on`, which polls it again with a real waker and drives its
    /// timers, I/O and spawned tasks.
    pub(super) fn run<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        let runtime = self.runtime.as_ref()?;
        let mut future = std::pin::pin!(future);
        {
            let _entered = runtime.enter();
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return Some(output);
            }
        }
        Some(runtime.block_on(future))
    }

    /// Whether tasks spawned on this runtime are still alive.
    pub(super) fn has_alive_tasks(&self) -> bool {
        self.metrics.num_alive_tasks() > 0
    }
}

impl Drop for StreamRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Calls the handler with `batch` and awaits it, turning an error or a panic
/// (while creating or polling the future) into a message. The call sees
/// `stop` as [`StreamStopSignal::current`].
pub(super) async fn run_handler(
    handle: &HandleStream,
    batch: Vec<EventRecord>,
    stop: StreamStopSignal,
) -> Result<(), String> {
    let created = std::panic::catch_unwind(AssertUnwindSafe(|| {
        CURRENT_STREAM_STOP.sync_scope(stop.clone(), || handle.call(batch))
    }));
    let future = match created {
        Ok(future) => future,
        Err(panic) => return Err(panicked(&*panic)),
    };
    let future = CURRENT_STREAM_STOP.scope(stop, future);
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(panicked(&*panic)),
    }
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> String {
    let message = if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    };
    format!("handler panicked: {message}")
}
