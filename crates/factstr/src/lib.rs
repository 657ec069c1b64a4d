#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod event;
mod matching;
mod query;
mod store;
mod stream;

#[doc(hidden)]
pub mod backend;

pub use error::EventStoreError;
pub use event::{EventRecord, NewEvent};
pub use matching::payload_matches;
pub use query::{AppendResult, EventFilter, EventQuery, QueryResult};
pub use store::EventStore;
pub use stream::{
    DurableStream, EventStream, HandleStream, StreamHandlerError, StreamHandlerFuture,
    StreamStopReason,
};
