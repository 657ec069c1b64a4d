use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::EventRecord;
use crate::backend::dispatch::SubscriptionStop;

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
/// next batch. Handlers run on the stream's own delivery thread inside a tokio
/// context, so they may use tokio timers and I/O, and may block their thread
/// without delaying other streams or appends.
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

/// An active stream registration, returned by `stream_all`, `stream_to`,
/// `stream_all_durable` and `stream_to_durable`.
///
/// Dropping it unsubscribes. Unsubscribing from inside the stream's own
/// handler does not deadlock; a batch already handed to the stream's delivery
/// may still arrive.
pub struct EventStream {
    id: u64,
    stop: SubscriptionStop,
}

impl EventStream {
    pub(crate) fn new(id: u64, stop: SubscriptionStop) -> Self {
        Self { id, stop }
    }

    /// The stream's id, distinct among the streams of one store.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops future deliveries. Calling it again does nothing.
    ///
    /// For a durable stream the name becomes free once a handler call in
    /// progress (if any) has returned; registering the name meanwhile waits
    /// for that call. Its cursor stays where it is.
    pub fn unsubscribe(&self) {
        self.stop.stop();
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EventStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
