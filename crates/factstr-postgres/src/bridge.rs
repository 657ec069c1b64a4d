//! Running the store's work on its runtime from any thread.

use std::future::Future;

use factstr::EventStoreError;
use tokio::runtime::Handle;

/// Runs `work` on the store's runtime and waits for its result on the
/// calling thread. Works from any thread, including from inside another
/// tokio runtime (it blocks on a channel, never on a runtime).
pub(crate) fn run_on<T: Send + 'static>(
    runtime: &Handle,
    work: impl Future<Output = Result<T, EventStoreError>> + Send + 'static,
) -> Result<T, EventStoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    drop(runtime.spawn(async move {
        let _ = sender.send(work.await);
    }));
    receiver.recv().unwrap_or_else(|_| {
        Err(EventStoreError::backend(
            "the store was closed before the operation finished",
        ))
    })
}
