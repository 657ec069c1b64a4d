#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod index;
mod legacy;
mod log;
mod options;
mod schema;
mod sql;
mod store;
mod writer;

pub use options::{SqliteDurability, SqliteStoreOptions};
pub use store::SqliteStore;
