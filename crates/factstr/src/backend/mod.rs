//! Building blocks for store implementations: the shared stream dispatch,
//! input validation, payload index terms, the commit clock, backoff and
//! poison-tolerant locks.
//!
//! Application code does not need this module. A store implements
//! [`EventStore`](crate::EventStore) by validating input with
//! [`validation`], deciding matches with [`EventQuery::matches`](crate::EventQuery::matches)
//! (optionally narrowing candidates with [`payload_terms`] first), and handing
//! every committed batch to its [`StreamDispatcher`](dispatch::StreamDispatcher).

mod clock;
mod committed;
pub mod dispatch;
pub mod payload_terms;
mod retry;
pub mod sync;
pub mod validation;

pub use clock::commit_timestamp;
pub use committed::committed_batch;
pub use dispatch::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, StreamDispatcher,
    StreamStopSignal,
};
pub use retry::Backoff;
