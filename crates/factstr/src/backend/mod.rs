//! The stores' interface: the shared stream dispatch, input validation,
//! the write-path rules, payload index terms, the commit clock, backoff and
//! poison-tolerant locks.
//!
//! Application code does not need this module, and it is hidden from the
//! user documentation (as sqlx hides its driver traits); it is public so
//! that the store crates, and stores outside this workspace, share one
//! implementation of every rule. Each item is reachable by one path. A store
//! implements
//! [`EventStore`](crate::EventStore) by validating input with
//! [`validation`], deciding matches with [`EventQuery::matches`](crate::EventQuery::matches)
//! (optionally narrowing candidates with [`payload_terms`] first), and handing
//! every committed batch to its [`StreamDispatcher`].

mod clock;
mod committed;
mod condition;
mod cursors;
mod dispatch;
mod hash;
mod operations;
pub mod payload_terms;
mod retry;
pub mod sequence;
pub mod sync;
pub mod validation;

pub use clock::commit_timestamp;
pub use committed::{committed_batch, committed_records, group_into_batches};
pub use condition::{Condition, newest_match_in_group};
pub use cursors::{PendingCursors, decode_durable_query, encode_durable_query};
pub use dispatch::{
    BatchReadRequest, CLOSE_PATIENCE, CommittedBatchPage, CommittedLog, DurableStreamState,
    MAX_QUEUED_EVENTS, READ_PAGE_EVENTS, Registration, STOPPING_STREAM_PATIENCE, StreamDispatcher,
    StreamStopSignal, normalized_stream_query,
};
pub use hash::{fnv1a_64, fnv1a_64_parts};
pub use operations::{
    DurableStreamInfo, LogStats, StoreOperations, check_imported_batches, read_whole_batches,
};
pub use retry::Backoff;
