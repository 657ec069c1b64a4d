//! The async face of an event store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

use crate::paging;
use crate::{
    AppendResult, DurableStream, EventQuery, EventStoreError, EventStream, HandleStream, NewEvent,
    QueryResult,
};

/// The future an [`AsyncEventStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EventStoreError>> + Send + 'a>>;

/// The operations of [`EventStore`](crate::EventStore) as async methods, with
/// the same semantics, for async services (axum, actix, tonic).
///
/// Every store of this workspace implements it natively: awaiting a method
/// never blocks the caller's runtime worker on a disk, a socket or a lock
/// held by another append (PostgreSQL awaits its database work, SQLite hands
/// work to its writer and read connections and awaits the answer, memory
/// answers at once). The trait is object-safe, so services keep the store as
/// `Arc<dyn AsyncEventStore>` in their shared state. Handlers, streams and
/// errors are the same as in the sync API; the conformance suite runs every
/// case through both.
///
/// A type implementing both traits has two methods of each name: call
/// through the trait you imported (or `AsyncEventStore::query(&store, ..)`).
pub trait AsyncEventStore: Send + Sync {
    /// See [`EventStore::query`](crate::EventStore::query).
    fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult>;

    /// See [`EventStore::query_page`](crate::EventStore::query_page). The
    /// provided implementation reads the whole result and keeps the first
    /// `limit` records; the stores of this workspace read no further than
    /// the page.
    fn query_page<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: usize,
    ) -> StoreFuture<'a, QueryResult> {
        Box::pin(async move {
            paging::check_limit(limit)?;
            Ok(paging::truncated(self.query(event_query).await?, limit))
        })
    }

    /// See [`EventStore::append`](crate::EventStore::append).
    fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult>;

    /// See [`EventStore::append_if`](crate::EventStore::append_if).
    fn append_if<'a>(
        &'a self,
        new_events: Vec<NewEvent>,
        context_query: &'a EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreFuture<'a, AppendResult>;

    /// See [`EventStore::stream_all`](crate::EventStore::stream_all).
    fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream>;

    /// See [`EventStore::stream_to`](crate::EventStore::stream_to).
    fn stream_to<'a>(
        &'a self,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream>;

    /// See [`EventStore::stream_all_durable`](crate::EventStore::stream_all_durable):
    /// the future completes once the replay has finished.
    fn stream_all_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream>;

    /// See [`EventStore::stream_to_durable`](crate::EventStore::stream_to_durable):
    /// the future completes once the replay has finished.
    fn stream_to_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream>;
}

/// The pages of `event_query` in `store`, `page_size` records each at most,
/// as a [`futures::Stream`] reading one [`AsyncEventStore::query_page`] at a
/// time: the async form of [`EventStore::query_pages`](crate::EventStore::query_pages).
pub fn query_pages<'a, S: AsyncEventStore + ?Sized>(
    store: &'a S,
    event_query: &EventQuery,
    page_size: usize,
) -> impl Stream<Item = Result<QueryResult, EventStoreError>> + Send + 'a {
    let start = Some(event_query.clone());
    futures::stream::unfold(start, move |query| async move {
        let mut query = query?;
        let page = match store.query_page(&query, page_size).await {
            Ok(page) => page,
            Err(error) => return Some((Err(error), None)),
        };
        let last = page.last_returned_sequence_number?;
        let next = (!paging::is_last_page(&page, page_size)).then(|| {
            query.min_sequence_number = Some(last);
            query
        });
        Some((Ok(page), next))
    })
}

macro_rules! forward_async_event_store {
    ($($pointer:ty),*) => {$(
        impl<S: AsyncEventStore + ?Sized> AsyncEventStore for $pointer {
            fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult> {
                (**self).query(event_query)
            }
            fn query_page<'a>(
                &'a self,
                event_query: &'a EventQuery,
                limit: usize,
            ) -> StoreFuture<'a, QueryResult> {
                (**self).query_page(event_query, limit)
            }
            fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult> {
                (**self).append(new_events)
            }
            fn append_if<'a>(
                &'a self,
                new_events: Vec<NewEvent>,
                context_query: &'a EventQuery,
                expected_context_version: Option<u64>,
            ) -> StoreFuture<'a, AppendResult> {
                (**self).append_if(new_events, context_query, expected_context_version)
            }
            fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream> {
                (**self).stream_all(handle)
            }
            fn stream_to<'a>(
                &'a self,
                event_query: &'a EventQuery,
                handle: HandleStream,
            ) -> StoreFuture<'a, EventStream> {
                (**self).stream_to(event_query, handle)
            }
            fn stream_all_durable<'a>(
                &'a self,
                durable_stream: &'a DurableStream,
                handle: HandleStream,
            ) -> StoreFuture<'a, EventStream> {
                (**self).stream_all_durable(durable_stream, handle)
            }
            fn stream_to_durable<'a>(
                &'a self,
                durable_stream: &'a DurableStream,
                event_query: &'a EventQuery,
                handle: HandleStream,
            ) -> StoreFuture<'a, EventStream> {
                (**self).stream_to_durable(durable_stream, event_query, handle)
            }
        }
    )*};
}

forward_async_event_store!(&S, Box<S>, Arc<S>);
