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
mod condition;
mod cursors;
pub mod dispatch;
mod hash;
pub mod payload_terms;
mod retry;
pub mod sequence;
pub mod sync;
pub mod validation;

pub use clock::commit_timestamp;
pub use committed::{committed_batch, group_into_batches};
pub use condition::{Condition, newest_match_in_group};
pub use cursors::{PendingCursors, decode_durable_query, encode_durable_query};
pub use dispatch::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, StreamDispatcher,
};
pub use hash::{fnv1a_64, fnv1a_64_parts};
pub use retry::Backoff;
