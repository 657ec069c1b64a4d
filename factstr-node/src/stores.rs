//! Opening the persistent stores.

use std::sync::Arc;

use factstr::EventStoreError;

use crate::SharedStore;

pub(crate) fn open_sqlite(path: &str) -> Result<SharedStore, EventStoreError> {
    let _ = path;
    Err(EventStoreError::NotImplemented {
        store: "factstr-node",
        operation: "SQLite (pending)",
    })
    .map(|store: factstr_memory::MemoryStore| Arc::new(store) as SharedStore)
}

pub(crate) fn connect_postgres(url: &str) -> Result<SharedStore, EventStoreError> {
    let _ = url;
    Err(EventStoreError::NotImplemented {
        store: "factstr-node",
        operation: "PostgreSQL (pending)",
    })
    .map(|store: factstr_memory::MemoryStore| Arc::new(store) as SharedStore)
}
