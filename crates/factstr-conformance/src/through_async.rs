//! Runs the suite's cases through a store's [`AsyncEventStore`] face: an
//! [`EventStore`] whose every method spawns the async method on a tokio
//! runtime (multi-thread or current-thread) and waits for its answer.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;

use factstr::{
    AppendResult, AsyncEventStore, DurableStream, EventQuery, EventStore, EventStoreError,
    EventStream, HandleStream, NewEvent, QueryResult,
};

/// Which tokio runtime runs the async calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A multi-thread runtime with two workers.
    MultiThread,
    /// A current-thread runtime, driven by a thread of its own.
    CurrentThread,
}

/// A store used through its async methods.
pub struct ThroughAsync<S> {
    // Dropped first: the store closes before the runtime goes.
    store: Option<Arc<S>>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    _driver: Option<std::thread::JoinHandle<()>>,
    stop_driver: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<S: AsyncEventStore + 'static> ThroughAsync<S> {
    /// `store`, called through a runtime of `flavor`.
    pub fn new(store: S, flavor: Flavor) -> Self {
        match flavor {
            Flavor::MultiThread => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a multi-thread runtime");
                Self {
                    store: Some(Arc::new(store)),
                    handle: runtime.handle().clone(),
                    runtime: Some(runtime),
                    _driver: None,
                    stop_driver: None,
                }
            }
            Flavor::CurrentThread => {
                let (handle_tx, handle_rx) = mpsc::channel();
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let driver = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current-thread runtime");
                    handle_tx.send(runtime.handle().clone()).unwrap();
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                });
                Self {
                    store: Some(Arc::new(store)),
                    handle: handle_rx.recv().expect("the runtime's handle"),
                    runtime: None,
                    _driver: Some(driver),
                    stop_driver: Some(stop_tx),
                }
            }
        }
    }

    /// Runs `call` on the runtime and waits for its answer on this thread
    /// (which may be inside another runtime: it never calls `block_on`).
    fn run<T, F>(&self, call: impl FnOnce(Arc<S>) -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let store = Arc::clone(self.store.as_ref().expect("the store is open"));
        // A stream handler calling the store awaits the call in its own
        // task, as handler code would: so the store sees the call on the
        // stream's thread (where it refuses, rather than waits for, the
        // stream's own durable name).
        if std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("factstr-stream-"))
        {
            return futures::executor::block_on(call(store));
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        drop(self.handle.spawn(async move {
            let answer = call(Arc::clone(&store)).await;
            // Before answering: a caller that drops the store next must hold
            // its last reference.
            drop(store);
            let _ = sender.send(answer);
        }));
        receiver.recv().expect("the async call answered")
    }
}

impl<S> Drop for ThroughAsync<S> {
    fn drop(&mut self) {
        drop(self.store.take());
        if let Some(stop) = self.stop_driver.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl<S: AsyncEventStore + 'static> EventStore for ThroughAsync<S> {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        let query = event_query.clone();
        self.run(move |store| async move { AsyncEventStore::query(&*store, &query).await })
    }

    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        let query = event_query.clone();
        self.run(
            move |store| async move { AsyncEventStore::query_page(&*store, &query, limit).await },
        )
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        self.run(move |store| async move { AsyncEventStore::append(&*store, new_events).await })
    }

    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError> {
        let query = context_query.clone();
        self.run(move |store| async move {
            AsyncEventStore::append_if(&*store, new_events, &query, expected_context_version).await
        })
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        self.run(move |store| async move { AsyncEventStore::stream_all(&*store, handle).await })
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        let query = event_query.clone();
        self.run(
            move |store| async move { AsyncEventStore::stream_to(&*store, &query, handle).await },
        )
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        let durable = durable_stream.clone();
        self.run(move |store| async move {
            AsyncEventStore::stream_all_durable(&*store, &durable, handle).await
        })
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        let (durable, query) = (durable_stream.clone(), event_query.clone());
        self.run(move |store| async move {
            AsyncEventStore::stream_to_durable(&*store, &durable, &query, handle).await
        })
    }
}
