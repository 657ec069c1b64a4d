use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::EventRecord;
use crate::backend::sync::lock;

/// The name of a durable stream, under which the store keeps its cursor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DurableStream {
    name: String,
}

impl DurableStream {
    /// A durable stream called `name`. Registering it with an empty name is
    /// [`InvalidInput`](crate::EventStoreError::InvalidInput).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The failure a stream handler reports for a batch.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("stream handler failed: {message}")]
pub struct StreamHandlerError {
    message: String,
}

impl StreamHandlerError {
    /// A handler failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The description given by the handler.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The future a stream handler returns for one batch.
pub type StreamHandlerFuture =
    Pin<Box<dyn Future<Output = Result<(), StreamHandlerError>> + Send + 'static>>;

type HandlerFn = dyn Fn(Vec<EventRecord>) -> StreamHandlerFuture + Send + Sync + 'static;

/// An async stream handler: called with one committed batch at a time.
///
/// The store awaits the returned future before it hands the same stream its
/// next batch.
///
/// ## What a handler may do
/// Each stream runs its handler inside a tokio current-thread runtime of its
/// own, on one of the store's delivery threads. So a handler may use tokio
/// timers, I/O and `tokio::spawn` (spawned tasks run on the stream's runtime
/// whenever the handler awaits or the stream waits for batches), may block
/// its thread (synchronous I/O, `std::thread::sleep`), and may call the
/// store, including unsubscribing its own stream. None of that delays
/// appends; a handler that blocks or awaits for long may hold up other
/// streams once, for a few milliseconds, until its stream is given a thread
/// of its own. It must not call
/// `Handle::block_on` or `block_in_place` (tokio forbids both on a
/// current-thread runtime; the call fails as a handler panic).
///
/// ```
/// use factstr::{HandleStream, StreamHandlerError};
///
/// let handle = HandleStream::new(|batch| async move {
///     if batch.is_empty() {
///         return Err(StreamHandlerError::new("no events"));
///     }
///     Ok(())
/// });
/// let _also = handle.clone();
/// ```
#[derive(Clone)]
pub struct HandleStream {
    handler: Arc<HandlerFn>,
}

impl HandleStream {
    /// Wraps an async function of one batch.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(Vec<EventRecord>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StreamHandlerError>> + Send + 'static,
    {
        Self {
            handler: Arc::new(move |batch| Box::pin(handler(batch))),
        }
    }

    /// Calls the handler with `batch` and returns its future.
    pub fn call(&self, batch: Vec<EventRecord>) -> StreamHandlerFuture {
        (self.handler)(batch)
    }
}

impl fmt::Debug for HandleStream {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("HandleStream(..)")
    }
}

/// Why a stream stopped; see [`EventStream::stop_reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamStopReason {
    /// [`EventStream::unsubscribe`] was called or the `EventStream` dropped;
    /// the batches committed before that were delivered first.
    Unsubscribed,
    /// The store was closed or dropped.
    StoreClosed,
    /// A durable stream's handler failed (returned an error or panicked)
    /// for the batch starting at `first_sequence_number`; the cursor stays
    /// before that batch, and registering the name again redelivers it.
    HandlerFailed {
        /// The first sequence number of the batch the handler failed on.
        first_sequence_number: u64,
        /// The handler's error, or the panic message.
        message: String,
    },
    /// The stream could not read committed batches from the store while it
    /// was stopping, so it stopped without them.
    ReadFailed {
        /// What failed.
        message: String,
    },
}

impl fmt::Display for StreamStopReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsubscribed => formatter.write_str("unsubscribed"),
            Self::StoreClosed => formatter.write_str("the store was closed"),
            Self::HandlerFailed {
                first_sequence_number,
                message,
            } => write!(
                formatter,
                "the handler failed on the batch starting at {first_sequence_number}: {message}"
            ),
            Self::ReadFailed { message } => {
                write!(formatter, "reading committed batches failed: {message}")
            }
        }
    }
}

type StopCallback = Box<dyn FnOnce(&StreamStopReason) + Send + 'static>;

/// Whether a stream runs, shared by its [`EventStream`] and its delivery.
#[derive(Default)]
pub(crate) struct StreamStatus {
    state: Mutex<StatusState>,
}

#[derive(Default)]
struct StatusState {
    stopped: Option<StreamStopReason>,
    callbacks: Vec<StopCallback>,
}

impl StreamStatus {
    /// Records that the stream stopped for `reason` (the first reason wins)
    /// and runs the waiting callbacks.
    pub(crate) fn finish(&self, reason: StreamStopReason) {
        let callbacks = {
            let mut state = lock(&self.state);
            if state.stopped.is_some() {
                return;
            }
            state.stopped = Some(reason.clone());
            std::mem::take(&mut state.callbacks)
        };
        for callback in callbacks {
            run_stop_callback(callback, &reason);
        }
    }

    fn stop_reason(&self) -> Option<StreamStopReason> {
        lock(&self.state).stopped.clone()
    }

    fn on_stop(&self, callback: StopCallback) {
        let reason = {
            let mut state = lock(&self.state);
            match &state.stopped {
                Some(reason) => reason.clone(),
                None => {
                    state.callbacks.push(callback);
                    return;
                }
            }
        };
        run_stop_callback(callback, &reason);
    }
}

/// A panicking callback must not take down the thread that stops the stream.
fn run_stop_callback(callback: StopCallback, reason: &StreamStopReason) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| callback(reason))).is_err() {
        tracing::error!(%reason, "a stream's stop callback panicked");
    }
}

type Unsubscribe = Arc<dyn Fn(u64) + Send + Sync + 'static>;

/// An active stream registration, returned by `stream_all`, `stream_to`,
/// `stream_all_durable` and `stream_to_durable`.
///
/// Dropping it unsubscribes, so keep it as long as the stream should run
/// (`let _stream = store.stream_all(handle)?;`, not `store.stream_all(handle)?;`).
///
/// ## Unsubscribing
/// [`unsubscribe`](Self::unsubscribe) (or dropping) stops deliveries of
/// batches committed after the call; batches committed before it are still
/// delivered, and then the stream stops. It
/// never waits for a handler and never deadlocks, also when called from
/// inside the stream's own handler.
///
/// ## Stopping on its own
/// A durable stream stops when its handler fails while live; a stream also
/// stops when its store closes. [`is_running`](Self::is_running),
/// [`stop_reason`](Self::stop_reason) and [`on_stop`](Self::on_stop) tell
/// the application, so a projection that no longer moves does not go
/// unnoticed.
#[must_use = "dropping an EventStream unsubscribes it; keep it while the stream should run"]
pub struct EventStream {
    id: u64,
    unsubscribe: Unsubscribe,
    unsubscribed: AtomicBool,
    status: Arc<StreamStatus>,
    /// Whether a delivery reports the stop (streams of a store), or
    /// `unsubscribe` itself does (streams built with [`EventStream::new`]).
    delivered: bool,
}

impl EventStream {
    /// A handle whose [`unsubscribe`](Self::unsubscribe) (and drop) calls
    /// `unsubscribe(id)` once; for store implementations outside this
    /// workspace, as in factstr 0.5.2.
    #[doc(hidden)]
    pub fn new(id: u64, unsubscribe: Arc<dyn Fn(u64) + Send + Sync + 'static>) -> Self {
        Self {
            id,
            unsubscribe,
            unsubscribed: AtomicBool::new(false),
            status: Arc::new(StreamStatus::default()),
            delivered: false,
        }
    }

    /// A handle of a stream whose delivery reports its stop to `status`.
    pub(crate) fn delivered(id: u64, unsubscribe: Unsubscribe, status: Arc<StreamStatus>) -> Self {
        Self {
            id,
            unsubscribe,
            unsubscribed: AtomicBool::new(false),
            status,
            delivered: true,
        }
    }

    /// The stream's id, distinct among the streams of one store.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops deliveries of batches committed from now on; batches committed
    /// before the call are still delivered. Calling it again does nothing.
    ///
    /// For a durable stream, the name becomes free once those batches were
    /// delivered; registering the name meanwhile waits for that. Its cursor
    /// stays where the last delivered batch left it.
    pub fn unsubscribe(&self) {
        if self.unsubscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        (self.unsubscribe)(self.id);
        if !self.delivered {
            self.status.finish(StreamStopReason::Unsubscribed);
        }
    }

    /// Whether the stream still delivers (or will deliver) batches: `false`
    /// once it has stopped for good.
    pub fn is_running(&self) -> bool {
        self.status.stop_reason().is_none()
    }

    /// Why the stream stopped, once it has; `None` while it runs (also while
    /// it delivers its last batches after `unsubscribe`).
    pub fn stop_reason(&self) -> Option<StreamStopReason> {
        self.status.stop_reason()
    }

    /// Calls `callback` once when the stream stops (at once if it already
    /// has), on the thread that stops it. The callback must not block for
    /// long; a panic in it is caught and reported through `tracing`.
    pub fn on_stop(&self, callback: impl FnOnce(&StreamStopReason) + Send + 'static) {
        self.status.on_stop(Box::new(callback));
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EventStream")
            .field("id", &self.id)
            .field("stop_reason", &self.stop_reason())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn a_built_stream_calls_its_unsubscribe_once_with_its_id() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let stream = EventStream::new(7, Arc::new(move |id| recorded.lock().unwrap().push(id)));
        assert!(stream.is_running());
        stream.unsubscribe();
        stream.unsubscribe();
        drop(stream);
        assert_eq!(*calls.lock().unwrap(), vec![7]);
    }

    #[test]
    fn a_built_stream_reports_its_stop_to_callbacks_registered_before_and_after() {
        let stream = EventStream::new(1, Arc::new(|_| {}));
        let called = Arc::new(AtomicUsize::new(0));
        let before = Arc::clone(&called);
        stream.on_stop(move |reason| {
            assert_eq!(reason, &StreamStopReason::Unsubscribed);
            before.fetch_add(1, Ordering::SeqCst);
        });
        stream.unsubscribe();
        assert_eq!(stream.stop_reason(), Some(StreamStopReason::Unsubscribed));
        assert!(!stream.is_running());
        let after = Arc::clone(&called);
        stream.on_stop(move |_| {
            after.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(called.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_stop_callback_does_not_stop_the_others() {
        let status = StreamStatus::default();
        let called = Arc::new(AtomicUsize::new(0));
        status.on_stop(Box::new(|_| panic!("callback panics")));
        let counted = Arc::clone(&called);
        status.on_stop(Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        status.finish(StreamStopReason::StoreClosed);
        status.finish(StreamStopReason::Unsubscribed);
        assert_eq!(called.load(Ordering::SeqCst), 1);
        assert_eq!(status.stop_reason(), Some(StreamStopReason::StoreClosed));
    }

    #[test]
    fn event_streams_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EventStream>();
    }
}
