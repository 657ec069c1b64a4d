//! Running a stream's handler: the stream's own runtime, errors and panics.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::{EventRecord, HandleStream};

/// A tokio runtime for one stream's thread: handler timers, I/O and spawned
/// tasks run there, so a handler that blocks stalls only its own stream.
///
/// It shuts down without waiting when dropped: tokio forbids dropping a
/// runtime inside an async context (a registration from inside a handler
/// that fails drops it there), and blocking tasks a handler left running
/// must not hold up the end of the stream.
pub(super) struct StreamRuntime(Option<tokio::runtime::Runtime>);

impl StreamRuntime {
    pub(super) fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| Self(Some(runtime)))
    }

    pub(super) fn block_on<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|runtime| runtime.block_on(future))
    }
}

impl Drop for StreamRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Calls the handler with `batch` and awaits it, turning an error or a panic
/// (while creating or polling the future) into a message.
pub(super) async fn run_handler(
    handle: &HandleStream,
    batch: Vec<EventRecord>,
) -> Result<(), String> {
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handle.call(batch))) {
        Ok(future) => future,
        Err(panic) => return Err(panicked(&*panic)),
    };
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
