//! JavaScript stream handlers.
//!
//! The JS layer hands over a wrapper around the user's handler: an async
//! function taking the batch as JSON text and resolving with `null` on
//! success or with a message when the user's handler threw or rejected. It
//! never rejects itself, so no JavaScript exception can reach Node-API's
//! fatal-exception path from here.

use std::sync::Arc;

use factstr::{HandleStream, StreamHandlerError};
use napi::Status;
use napi::bindgen_prelude::Promise;
use napi::threadsafe_function::ThreadsafeFunction;

use crate::wire;

/// The wrapped JS handler: `(batchJson: string) => Promise<string | null>`.
pub(crate) type JsHandler =
    ThreadsafeFunction<String, Promise<Option<String>>, String, Status, false>;

/// A stream handler that calls the JS handler on the JS thread and waits
/// for its promise. The stream's thread waits; the event loop does not.
pub(crate) fn handle_stream(handler: JsHandler) -> HandleStream {
    let handler = Arc::new(handler);
    HandleStream::new(move |batch| {
        let handler = Arc::clone(&handler);
        async move {
            let settled = handler
                .call_async_catch(wire::batch(&batch))
                .await
                .map_err(|error| {
                    StreamHandlerError::new(format!("calling the handler failed: {error}"))
                })?
                .await
                .map_err(|error| {
                    StreamHandlerError::new(format!("the handler's promise failed: {error}"))
                })?;
            match settled {
                None => Ok(()),
                Some(message) => Err(StreamHandlerError::new(message)),
            }
        }
    })
}
