#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod durable;
mod error;
mod legacy;
mod listener;
mod log;
mod options;
mod schema;
mod sql;
mod store;
mod writer;

pub use options::{PostgresBootstrapOptions, PostgresStoreOptions};
pub use store::PostgresStore;
