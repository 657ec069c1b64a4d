#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Layers, each using only the ones above it (docs/design.md, "PostgreSQL
// store"; checked by tests/layers.rs).
//
// Bottom: errors, options, tables, the row codec, the WHERE clause,
// connecting, commit news, the runtime bridge, the 0.5.x migration and
// schema preparation.
mod bridge;
mod connect;
mod error;
mod legacy;
mod news;
mod options;
mod prepare;
mod rows;
mod schema;
mod where_clause;
// Middle: reads, appends, durable streams, the LISTEN and publisher tasks.
mod durable;
mod listen;
mod publish;
mod read;
mod writer;
// Top: the dispatcher's view of the log, starting, and the store.
mod committed_log;
mod start;
mod store;
// Above the store: what operating it needs (factstr::backend::StoreOperations).
mod operations;

pub use options::{PostgresBootstrapOptions, PostgresStoreOptions};
pub use store::PostgresStore;
