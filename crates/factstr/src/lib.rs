// The README's example runs on factstr-memory, which can only be a path
// dev-dependency here (it depends on factstr), and cargo drops those from the
// published crate: factstr-examples runs it as a doctest instead, so `cargo test`
// works on a downloaded factstr too.
#![cfg_attr(not(doctest), doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]

mod async_store;
mod error;
mod event;
mod matching;
mod paging;
mod query;
mod store;
mod stream;

#[doc(hidden)]
pub mod backend;

pub use async_store::{AsyncEventStore, StoreFuture, query_pages};
pub use error::EventStoreError;
pub use event::{EventRecord, NewEvent};
pub use matching::payload_matches;
pub use paging::QueryPages;
pub use query::{AppendResult, EventFilter, EventQuery, QueryResult};
pub use store::EventStore;
pub use stream::{
    DurableStream, EventStream, HandleStream, StreamHandlerError, StreamHandlerFuture,
    StreamStopReason,
};
