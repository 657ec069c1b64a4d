#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Modules in layers, each using only the ones below it (the order is in
// tests/layers.rs, which checks it; docs/design.md, "SQLite store").
//
// Bottom: errors, options, SQL text, the payload index documents, the row
// codec, the 0.5.x migration, and opening files.
mod error;
mod index;
mod legacy;
mod options;
mod rows;
mod schema;
mod sql;
// Middle: choosing and reading candidates, reads, read connections,
// durable streams, the writer.
mod durable;
mod plan;
mod read;
mod readers;
mod writer;
// Top: the dispatcher's view of the log, and the store.
mod committed_log;
mod store;
// Above the store: what operating it needs (factstr::backend::StoreOperations).
mod operations;

#[cfg(test)]
mod testing;

pub use options::{SqliteDurability, SqliteStoreOptions};
pub use store::SqliteStore;
