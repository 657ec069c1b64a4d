//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use factstr::{
    AppendResult, AsyncEventStore, DurableStream, EventQuery, EventStore, EventStoreError,
    EventStream, HandleStream, NewEvent, QueryResult, StoreFuture,
};
use factstr_sqlite::{SqliteStore, SqliteStoreOptions};
use tempfile::TempDir;

/// A store on a new file in a temporary folder, removed when dropped (after
/// the store is closed).
pub(crate) struct TemporaryStore {
    // Fields drop in order: the store closes before its folder goes.
    pub(crate) store: SqliteStore,
    pub(crate) folder: TempDir,
}

impl TemporaryStore {
    pub(crate) fn new() -> Self {
        Self::with_options(SqliteStoreOptions::default())
    }

    pub(crate) fn with_options(options: SqliteStoreOptions) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(folder.path().join("events.db"), options).unwrap();
        Self { store, folder }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.store.database_path().to_path_buf()
    }
}

/// A new temporary folder, removed when dropped.
pub(crate) fn new_folder() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// A store on the database file in `folder`, opened with default options.
pub(crate) fn open_in(folder: &TempDir) -> SqliteStore {
    SqliteStore::open(database_in(folder)).unwrap()
}

/// A path for a database file in `folder`.
pub(crate) fn database_in(folder: &TempDir) -> PathBuf {
    folder.path().join("events.db")
}

/// The bytes of the file at `path`.
pub(crate) fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

impl EventStore for TemporaryStore {
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
        EventStore::query(&self.store, event_query)
    }

    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        EventStore::query_page(&self.store, event_query, limit)
    }

    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
        EventStore::append(&self.store, new_events)
    }

    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError> {
        EventStore::append_if(
            &self.store,
            new_events,
            context_query,
            expected_context_version,
        )
    }

    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
        EventStore::stream_all(&self.store, handle)
    }

    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        EventStore::stream_to(&self.store, event_query, handle)
    }

    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        EventStore::stream_all_durable(&self.store, durable_stream, handle)
    }

    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError> {
        EventStore::stream_to_durable(&self.store, durable_stream, event_query, handle)
    }
}

impl AsyncEventStore for TemporaryStore {
    fn query<'a>(&'a self, event_query: &'a EventQuery) -> StoreFuture<'a, QueryResult> {
        AsyncEventStore::query(&self.store, event_query)
    }

    fn query_page<'a>(
        &'a self,
        event_query: &'a EventQuery,
        limit: usize,
    ) -> StoreFuture<'a, QueryResult> {
        AsyncEventStore::query_page(&self.store, event_query, limit)
    }

    fn append(&self, new_events: Vec<NewEvent>) -> StoreFuture<'_, AppendResult> {
        AsyncEventStore::append(&self.store, new_events)
    }

    fn append_if<'a>(
        &'a self,
        new_events: Vec<NewEvent>,
        context_query: &'a EventQuery,
        expected_context_version: Option<u64>,
    ) -> StoreFuture<'a, AppendResult> {
        AsyncEventStore::append_if(
            &self.store,
            new_events,
            context_query,
            expected_context_version,
        )
    }

    fn stream_all(&self, handle: HandleStream) -> StoreFuture<'_, EventStream> {
        AsyncEventStore::stream_all(&self.store, handle)
    }

    fn stream_to<'a>(
        &'a self,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        AsyncEventStore::stream_to(&self.store, event_query, handle)
    }

    fn stream_all_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        AsyncEventStore::stream_all_durable(&self.store, durable_stream, handle)
    }

    fn stream_to_durable<'a>(
        &'a self,
        durable_stream: &'a DurableStream,
        event_query: &'a EventQuery,
        handle: HandleStream,
    ) -> StoreFuture<'a, EventStream> {
        AsyncEventStore::stream_to_durable(&self.store, durable_stream, event_query, handle)
    }
}
