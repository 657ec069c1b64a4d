//! Runtime: the synchronous API called from tokio runtimes, from stream
//! handlers, and through trait objects.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use factstr::{DurableStream, EventQuery, EventStore, EventStream, HandleStream};

use crate::support::{Deliveries, PATIENCE, numbered, sequence_numbers};

/// Exercises every kind of call; used from each calling context.
fn exercise(store: &dyn EventStore, name: &str) {
    store.append(numbered("a", 2)).unwrap();
    let context = EventQuery::for_event_types(["a"]);
    let seen = store.query(&context).unwrap().current_context_version;
    store.append_if(numbered("a", 1), &context, seen).unwrap();
    let live = Deliveries::new();
    let _live = store.stream_to(&context, live.handler()).unwrap();
    let durable = Deliveries::new();
    let _durable = store
        .stream_all_durable(&DurableStream::new(name), durable.handler())
        .unwrap();
    let replayed = sequence_numbers(&durable.batches().concat());
    assert!(replayed.len() >= 3, "replayed {replayed:?}");
    let last = store.append(numbered("a", 1)).unwrap().last_sequence_number;
    live.wait_for_sequence(last);
    durable.wait_for_sequence(last);
}

pub fn methods_work_inside_a_current_thread_runtime<S: EventStore>(new_store: &dyn Fn() -> S) {
    let store = new_store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { exercise(&store, "current-thread") });
}

pub fn methods_work_inside_a_multi_thread_runtime<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        exercise(store.as_ref(), "multi-thread");
        let spawned = Arc::clone(&store);
        tokio::spawn(async move { exercise(spawned.as_ref(), "multi-thread-task") })
            .await
            .unwrap();
    });
}

pub fn methods_work_inside_a_stream_handler<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    store.append(numbered("history", 3)).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let kept: Arc<Mutex<Vec<EventStream>>> = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (store, kept) = (Arc::clone(&store), Arc::clone(&kept));
        let done_tx = Mutex::new(done_tx);
        HandleStream::new(move |batch| {
            if batch[0].event_type == "trigger" {
                let context = EventQuery::for_event_types(["from-handler"]);
                let seen = store.query(&context).unwrap().current_context_version;
                store
                    .append_if(numbered("from-handler", 1), &context, seen)
                    .unwrap();
                store.append(numbered("from-handler", 1)).unwrap();
                let live = Deliveries::new();
                let durable = Deliveries::new();
                let mut kept = kept.lock().unwrap();
                kept.push(store.stream_all(live.handler()).unwrap());
                kept.push(
                    store
                        .stream_all_durable(
                            &DurableStream::new("registered-in-handler"),
                            durable.handler(),
                        )
                        .unwrap(),
                );
                let replayed = sequence_numbers(&durable.batches().concat());
                let _ = done_tx.lock().unwrap().send(replayed);
            }
            async { Ok(()) }
        })
    };
    let _stream = store.stream_all(handler).unwrap();
    store.append(numbered("trigger", 1)).unwrap();
    let replayed = done_rx
        .recv_timeout(PATIENCE)
        .expect("the handler finished its calls");
    assert_eq!(replayed, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        6
    );
}

pub fn store_is_usable_as_a_shared_trait_object<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    let store: Arc<dyn EventStore + Send + Sync> = Arc::new(new_store());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.append(numbered("a", 1)).unwrap())
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    exercise(store.as_ref(), "trait-object");
}

pub fn dropping_the_store_inside_a_runtime_with_active_streams_does_not_panic<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = new_store();
        let deliveries = Deliveries::new();
        let live = store.stream_all(deliveries.handler()).unwrap();
        let durable = store
            .stream_all_durable(
                &DurableStream::new("dropped-with-store"),
                deliveries.handler(),
            )
            .unwrap();
        store.append(numbered("a", 1)).unwrap();
        deliveries.wait_for_events(2);
        drop(store);
        live.unsubscribe();
        drop(durable);
    });
}
