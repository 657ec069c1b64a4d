//! What a store provides to the dispatcher: committed batches and durable
//! cursors.

use crate::{EventQuery, EventRecord, EventStoreError};

/// A store's committed log and durable cursors, as the dispatcher reads them.
///
/// Methods are called from stream delivery threads and from registration,
/// never while the dispatcher holds a lock.
pub trait CommittedLog: Send + Sync + 'static {
    /// The last sequence number committed in storage (0 when empty), read
    /// now: it includes commits of other store instances and processes that
    /// were not published to this dispatcher yet. Durable registration
    /// replays up to it.
    fn committed_head(&self) -> Result<u64, EventStoreError>;

    /// Reads committed batches with sequence numbers in
    /// `request.after < s <= request.through`, in ascending order.
    ///
    /// Each returned batch holds events of one committed batch only, in
    /// sequence order, and a committed batch is never split across pages.
    /// When `request.query` is `Some`, the store may leave out events (and
    /// batches) that do not match it; the dispatcher applies the query again.
    /// `scanned_through` tells how far the read got: everything up to it that
    /// the dispatcher needs is in `batches`. It must be greater than
    /// `request.after` (unless `after == through`) and at most
    /// `request.through`. `max_events` is a page size hint.
    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError>;

    /// Opens the durable stream `name` for delivery by this process.
    ///
    /// Creates it with `query` and cursor 0 when it does not exist yet, and
    /// returns what is stored for it. The dispatcher compares the stored
    /// query with `query` and rejects a mismatch. A store that shares its log
    /// with other processes claims the name here and fails with
    /// `BackendFailure` when another process holds it.
    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError>;

    /// Records that every fact the stream needs up to `cursor` was handled.
    /// Cursors never move backwards: the store keeps the greater value.
    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError>;

    /// Releases the claim taken by `open_durable_stream`, after writing the
    /// stream's last cursor. Called on the stream's delivery thread (or the
    /// registering thread when registration fails), never on the thread that
    /// unsubscribes, so it may wait for the store.
    fn close_durable_stream(&self, name: &str);
}

/// A request for committed batches; see [`CommittedLog::read_committed_batches`].
#[derive(Clone, Copy, Debug)]
pub struct BatchReadRequest<'a> {
    /// Exclusive lower bound.
    pub after: u64,
    /// Inclusive upper bound.
    pub through: u64,
    /// The stream's query, which the store may use to narrow the read.
    pub query: Option<&'a EventQuery>,
    /// Page size hint in events.
    pub max_events: usize,
}

/// One page of committed batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommittedBatchPage {
    /// Committed batches (possibly narrowed by the request's query), ascending.
    pub batches: Vec<Vec<EventRecord>>,
    /// The sequence number the read covered, inclusive.
    pub scanned_through: u64,
}

/// What a store keeps for a durable stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableStreamState {
    /// The query the stream was first registered with, normalized.
    pub query: EventQuery,
    /// The last sequence number the stream has handled (0 at first).
    pub cursor: u64,
}

/// The normalized form of a stream query: no `min_sequence_number`, and no
/// filters when it matches everything. Stores persist durable queries in this
/// form.
pub fn normalized_stream_query(query: &EventQuery) -> EventQuery {
    EventQuery {
        filters: if query.matches_everything() {
            None
        } else {
            query.filters.clone()
        },
        min_sequence_number: None,
    }
}

/// Checks that a page answers `request` as [`CommittedLog`] promises.
pub(super) fn check_page(
    request: &BatchReadRequest<'_>,
    page: CommittedBatchPage,
) -> Result<CommittedBatchPage, EventStoreError> {
    let progressed = page.scanned_through > request.after || request.after >= request.through;
    let in_range = page.scanned_through <= request.through
        && page.batches.iter().flatten().all(|record| {
            record.sequence_number > request.after && record.sequence_number <= page.scanned_through
        });
    if progressed && in_range {
        Ok(page)
    } else {
        Err(EventStoreError::backend(format!(
            "the store returned a page of committed batches outside ({}, {}] (scanned through {})",
            request.after, request.through, page.scanned_through
        )))
    }
}
