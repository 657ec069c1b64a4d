//! A handler call learns that its stream was asked to stop
//! (`StreamStopSignal`), so a store's handler wrapper waiting for its
//! backend can give up instead of holding the stream.

#![allow(clippy::unwrap_used)] // test code

use std::sync::{Arc, Mutex, mpsc};

use factstr::backend::StreamStopSignal;
use factstr::{
    DurableStream, EventStore, HandleStream, NewEvent, StreamHandlerError, StreamStopReason,
};
use factstr_conformance::support::eventually;
use factstr_memory::MemoryStore;
use serde_json::json;

/// A handler that reports whether it sees a stop signal, then waits until
/// its stream is asked to stop and fails with `gave up`.
fn waiting_for_the_stop(seen: mpsc::Sender<bool>) -> HandleStream {
    let seen = Arc::new(Mutex::new(seen));
    HandleStream::new(move |_batch| {
        let seen_while_creating = StreamStopSignal::current().is_some();
        let seen = Arc::clone(&seen);
        async move {
            let signal = StreamStopSignal::current();
            let not_yet_requested = signal.as_ref().is_some_and(|signal| !signal.is_requested());
            seen.lock()
                .unwrap()
                .send(seen_while_creating && not_yet_requested)
                .unwrap();
            let signal = signal.unwrap();
            signal.requested().await;
            assert!(signal.is_requested());
            Err(StreamHandlerError::new("gave up"))
        }
    })
}

fn append_one(store: &MemoryStore) {
    store.append(vec![NewEvent::new("a", json!({}))]).unwrap();
}

#[test]
fn there_is_no_stop_signal_outside_a_handler_call() {
    assert!(StreamStopSignal::current().is_none());
}

#[test]
fn unsubscribing_signals_the_handler_call_in_progress() {
    let store = MemoryStore::new();
    let (seen, handler_running) = mpsc::channel();
    let stream = store
        .stream_all_durable(&DurableStream::new("waits"), waiting_for_the_stop(seen))
        .unwrap();
    append_one(&store);
    assert!(handler_running.recv().unwrap());
    stream.unsubscribe();
    eventually("the stream stopping", || !stream.is_running());
    assert_eq!(
        stream.stop_reason(),
        Some(StreamStopReason::HandlerFailed {
            first_sequence_number: 1,
            message: "stream handler failed: gave up".to_owned(),
        })
    );
}

#[test]
fn closing_the_store_signals_the_handler_call_in_progress() {
    let store = MemoryStore::new();
    let (seen, handler_running) = mpsc::channel();
    let stream = store.stream_all(waiting_for_the_stop(seen)).unwrap();
    append_one(&store);
    assert!(handler_running.recv().unwrap());
    drop(store);
    // Ended within the close's patience, not abandoned after it.
    assert!(!stream.is_running());
    assert_eq!(stream.stop_reason(), Some(StreamStopReason::StoreClosed));
}
