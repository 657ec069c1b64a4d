use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use factstr::backend::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, StreamDispatcher,
};
use factstr::backend::{Condition, sync, validation};
use factstr::{
    AppendResult, AsyncEventStore, DurableStream, EventQuery, EventStore, EventStoreError,
    EventStream, HandleStream, NewEvent, QueryResult, StoreFuture,
};

use crate::log::LogState;

/// The in-memory event store: the semantic reference for every other store.
///
/// Nothing is persisted; durable stream cursors live as long as the store.
///
/// # Implementation
///
/// One `RwLock` guards the log: appends take it for writing, check the
/// context of `append_if` and commit under it, and hand the committed batch to
/// the stream dispatcher before releasing it, so delivery order is commit
/// order. Queries read under the same lock, so a query's records and its
/// context version come from one snapshot. Each event is stored once, with an
/// index from event type and one from payload term (see
/// `factstr::backend::payload_terms`) to its sequence numbers; `query` and
/// `append_if` visit only indexed candidates and let the shared matcher decide.
pub struct MemoryStore {
    shared: Arc<SharedLog>,
}

struct SharedLog {
    state: RwLock<LogState>,
    dispatcher: StreamDispatcher,
    durable_streams: Mutex<HashMap<String, DurableStreamState>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(SharedLog {
                state: RwLock::new(LogState::default()),
                dispatcher: StreamDispatcher::new(0),
                durable_streams: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn log(&self) -> Arc<dyn CommittedLog> {
        Arc::clone(&self.shared) as Arc<dyn CommittedLog>
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.shared.dispatcher.close();
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemoryStore")
            .field(
                "last_sequence_number",
                &self.shared.read().last_sequence_number(),
            )
            .finish()
    }
}

impl EventStore for MemoryStore {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        validation::validate_query(event_query)?;
        Ok(self.shared.read().query(event_query, usize::MAX))
    }

    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        validation::validate_query(event_query)?;
        validation::validate_page_limit(limit)?;
        Ok(self.shared.read().query(event_query, limit))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        validation::validate_new_events(&new_events)?;
        let mut state = self.shared.write();
        self.shared.commit(&mut state, new_events)
    }

    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError> {
        validation::validate_conditional_append(
            &new_events,
            context_query,
            expected_context_version,
        )?;
        let mut state = self.shared.write();
        Condition::check_version(
            expected_context_version,
            state.context_version(context_query),
        )?;
        self.shared.commit(&mut state, new_events)
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        self.shared.dispatcher.stream_all(self.log(), handle)
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.shared
            .dispatcher
            .stream_to(self.log(), event_query, handle)
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.shared
            .dispatcher
            .stream_all_durable(self.log(), durable_stream, handle)
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        self.shared
            .dispatcher
            .stream_to_durable(self.log(), durable_stream, event_query, handle)
    }
}

/// Memory answers at once: no method waits for I/O, and a durable
/// registration waits only for its replay's handlers.
impl AsyncEventStore for MemoryStore {
    fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult> {
        Box::pin(std::future::ready(EventStore::query(self, event_query)))
    }

    fn query_page<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: usize,
    ) -> StoreFuture<'a, QueryResult> {
        Box::pin(std::future::ready(EventStore::query_page(
            self,
            event_query,
            limit,
        )))
    }

    fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult> {
        Box::pin(std::future::ready(EventStore::append(self, new_events)))
    }

    fn append_if<'a>(
        &'a self,
        new_events: Vec<NewEvent>,
        context_query: &'a EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreFuture<'a, AppendResult> {
        Box::pin(std::future::ready(EventStore::append_if(
            self,
            new_events,
            context_query,
            expected_context_version,
        )))
    }

    fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream> {
        Box::pin(std::future::ready(EventStore::stream_all(self, handle)))
    }

    fn stream_to<'a>(
        &'a self,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        Box::pin(std::future::ready(EventStore::stream_to(
            self,
            event_query,
            handle,
        )))
    }

    fn stream_all_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        let registration =
            self.shared
                .dispatcher
                .start_durable(self.log(), durable_stream, None, handle);
        Box::pin(async move { registration?.replayed().await })
    }

    fn stream_to_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        let registration = self.shared.dispatcher.start_durable(
            self.log(),
            durable_stream,
            Some(event_query),
            handle,
        );
        Box::pin(async move { registration?.replayed().await })
    }
}

impl SharedLog {
    /// Commits under the write lock and publishes before releasing it.
    fn commit(
        &self,
        state: &mut LogState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let result = state.commit(events)?;
        self.dispatcher
            .publish_with(result.last_sequence_number, || state.committed(&result));
        Ok(result)
    }

    // No code panics while holding these locks; recovering from poisoning
    // keeps the store usable if that ever changes.
    fn read(&self) -> RwLockReadGuard<'_, LogState> {
        sync::read(&self.state)
    }

    fn write(&self) -> RwLockWriteGuard<'_, LogState> {
        sync::write(&self.state)
    }

    fn durable_streams(&self) -> MutexGuard<'_, HashMap<String, DurableStreamState>> {
        sync::lock(&self.durable_streams)
    }
}

impl CommittedLog for SharedLog {
    fn committed_head(&self) -> Result<u64, EventStoreError> {
        Ok(self.read().last_sequence_number())
    }

    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        Ok(self.read().read_committed_batches(request))
    }

    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        Ok(self
            .durable_streams()
            .entry(name.to_owned())
            .or_insert_with(|| DurableStreamState {
                query: query.clone(),
                cursor: 0,
            })
            .clone())
    }

    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError> {
        if let Some(stream) = self.durable_streams().get_mut(name) {
            stream.cursor = stream.cursor.max(cursor);
        }
        Ok(())
    }

    fn close_durable_stream(&self, _name: &str) {}
}
