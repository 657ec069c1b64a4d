use std::sync::Arc;

use crate::paging::{self, QueryPages};
use crate::{
    AppendResult, DurableStream, EventQuery, EventStoreError, EventStream, HandleStream, NewEvent,
    QueryResult,
};

/// An append-only log of facts with conditional appends and streams.
///
/// The trait is synchronous and object-safe; every store is `Send + Sync`.
///
/// # Contract
///
/// Every store **must** keep each guarantee below. Each names the case of the
/// shared suite (`factstr-conformance`, run by every store through
/// `conformance_tests!`) that proves it.
///
/// ## Append
/// 1. Sequence numbers are global, start at 1 and have no gaps; a batch of `n`
///    events gets one consecutive range and `committed_count = n`
///    (`append::appends_get_consecutive_sequence_numbers_starting_at_one`,
///    `append::append_returns_the_committed_range_and_count`).
/// 2. An empty batch is refused with [`EventStoreError::EmptyAppend`] before
///    anything else is checked (`append::empty_append_is_refused_with_empty_append`,
///    `append::empty_conditional_append_is_refused_before_the_context_is_checked`).
/// 3. A failed append writes nothing, delivers nothing and consumes no
///    sequence number (`append::failed_append_consumes_no_sequence_number`,
///    `append::invalid_event_anywhere_in_a_batch_writes_nothing_of_it`,
///    `live_streams::failed_appends_deliver_nothing`).
/// 4. `occurred_at` is the commit time in UTC truncated to microseconds,
///    shared by all events of a batch
///    (`append::events_of_one_batch_share_one_commit_time`,
///    `append::commit_time_is_utc_truncated_to_microseconds`).
/// 5. Payloads of every JSON kind read back unchanged; input a store cannot
///    hold (an empty event type or one over
///    [`MAX_EVENT_TYPE_BYTES`](crate::backend::validation::MAX_EVENT_TYPE_BYTES))
///    is [`EventStoreError::InvalidInput`] and writes nothing
///    (`append::payloads_of_every_json_kind_read_back_unchanged`,
///    `append::empty_event_type_is_invalid_input_and_writes_nothing`,
///    `append::too_deeply_nested_payload_is_invalid_input`,
///    `append::event_type_longer_than_the_shared_limit_is_invalid_input`).
///
/// ## Query
/// 6. Records come back in ascending sequence order; `min_sequence_number` is
///    exclusive (`query::query_returns_records_in_ascending_sequence_order`,
///    `query::min_sequence_number_is_an_exclusive_cursor`).
/// 7. `last_returned_sequence_number` is the last returned record's number;
///    `current_context_version` is the greatest matching sequence number
///    ignoring `min_sequence_number`, `None` when nothing matches
///    (`query::last_returned_sequence_number_is_the_last_record_or_none`,
///    `query::context_version_ignores_min_sequence_number`,
///    `query::context_version_is_none_when_nothing_matches`).
/// 8. Both figures come from one snapshot, even under concurrent appends
///    (`concurrency::query_snapshot_is_consistent_under_concurrent_appends`).
/// 9. Filters and payload predicates follow the rules of [`EventFilter`](crate::EventFilter)
///    and [`payload_matches`](crate::payload_matches), in `query`, `append_if`
///    and streams alike (modules `filters` and `payload_predicates`).
///
/// ## Conditional append
/// 10. `append_if` appends only when the context version of `context_query`
///     (ignoring its `min_sequence_number`) equals `expected_context_version`,
///     and otherwise returns [`EventStoreError::ConditionalAppendConflict`]
///     and changes nothing (module `conditional_append`).
/// 11. Check and write are atomic: under concurrent callers no two appends
///     succeed against the same context version
///     (`concurrency::concurrent_conditional_appends_on_one_context_have_one_winner_per_version`).
///
/// ## Live streams
/// 12. `stream_all` delivers each later committed batch as one batch;
///     `stream_to` delivers the matching events of each batch as one batch and
///     nothing for a batch without matches; history is never replayed
///     (`live_streams::stream_all_delivers_each_committed_batch_as_one_batch`,
///     `live_streams::stream_to_delivers_the_matching_events_of_each_batch_as_one_batch`,
///     `live_streams::live_streams_never_replay_history`).
/// 13. Delivery follows commit order: per stream, strictly increasing sequence
///     numbers even with many appending threads
///     (`concurrency::streams_see_strictly_increasing_sequences_under_concurrent_appends`).
/// 14. Handlers are awaited one batch at a time per stream; a slow or blocking
///     handler never delays appends, and other streams only once, by a few
///     milliseconds, until its stream has a thread of its own
///     (`live_streams::handler_is_awaited_before_the_next_batch`,
///     `live_streams::slow_handler_delays_neither_other_streams_nor_appends`).
/// 15. A handler error or panic never rolls back the append and never affects
///     other streams; a live stream stays subscribed
///     (`live_streams::handler_error_keeps_a_live_stream_subscribed`,
///     `live_streams::handler_panic_keeps_a_live_stream_subscribed_and_spares_other_streams`).
/// 16. `unsubscribe()` or dropping the [`EventStream`] stops deliveries of
///     batches committed after the call; batches committed before it are
///     still delivered, also when called from inside the stream's own handler
///     (`live_streams::unsubscribe_stops_future_deliveries`,
///     `stopping::batches_committed_before_unsubscribe_are_still_delivered`,
///     `live_streams::unsubscribing_from_inside_the_own_handler_does_not_deadlock`).
/// 17. Closing or dropping a store first delivers the batches already
///     committed to its streams, waiting a bounded time for slow handlers
///     (`stopping::dropping_the_store_first_delivers_committed_batches_to_live_streams`,
///     `stopping::dropping_the_store_waits_only_a_bounded_time_for_a_stuck_handler`).
/// 18. A stream reports whether it runs and why it stopped
///     (`stopping::a_durable_stream_that_fails_live_reports_why_it_stopped`,
///     `stopping::an_unsubscribed_stream_reports_that_it_stopped`).
///
/// ## Durable streams
/// 19. Registration replays the committed batches after the stored cursor,
///     one handler call per committed batch, returns when the replay is done,
///     then continues live with no gap and no duplicate
///     (`durable_streams::first_registration_replays_every_batch_with_its_shape`,
///     `durable_streams::durable_stream_continues_live_after_replay`,
///     `concurrency::durable_registration_during_concurrent_appends_delivers_every_event_once_in_order`);
///     the replay covers everything committed before registration, by any
///     store instance or process
///     (`persistent::durable_registration_replays_what_another_instance_just_committed`).
/// 20. The cursor advances only after the handler succeeded and never moves
///     backwards; a replay failure makes registration return
///     [`EventStoreError::BackendFailure`]; a live failure stops the stream,
///     and registering again redelivers the failed batch
///     (`durable_streams::replay_handler_error_fails_registration_and_keeps_the_cursor`,
///     `durable_streams::live_handler_error_stops_the_durable_stream_and_redelivers_on_re_registration`).
/// 21. An active name, or a name stored with a different query, is refused
///     with `BackendFailure`; an empty name is `InvalidInput`
///     (`durable_streams::registering_an_active_name_is_a_backend_failure`,
///     `durable_streams::registering_a_name_with_a_different_query_is_a_backend_failure`,
///     `durable_streams::empty_durable_name_is_invalid_input`).
///
/// ## Runtime
/// 22. Every method may be called from any thread, inside tokio runtimes and
///     inside stream handlers, without panicking or deadlocking
///     (module `runtime`).
pub trait EventStore {
    /// Returns the records matching `event_query` after its
    /// `min_sequence_number`, with the context version of its filters.
    fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError>;

    /// Returns at most `limit` records matching `event_query` after its
    /// `min_sequence_number`, with the context version of its filters (as
    /// [`query`](Self::query) would give it): one page of a read that goes
    /// on with `min_sequence_number` set to the page's
    /// `last_returned_sequence_number`. Memory stays bounded by `limit`
    /// whatever the size of the log, and the context version can be used
    /// for [`append_if`](Self::append_if) as with `query`.
    ///
    /// A `limit` of 0 is [`InvalidInput`](EventStoreError::InvalidInput).
    /// The provided implementation reads the whole result with `query` and
    /// keeps the first `limit` records, so stores written before this method
    /// existed keep compiling; the stores of this workspace read no further
    /// than the page.
    fn query_page(
        &self,
        event_query: &EventQuery,
        limit: usize,
    ) -> Result<QueryResult, EventStoreError> {
        paging::check_limit(limit)?;
        Ok(paging::truncated(self.query(event_query)?, limit))
    }

    /// The pages of `event_query`, `page_size` records each at most, read
    /// one [`query_page`](Self::query_page) at a time (for `&dyn
    /// EventStore`, use [`QueryPages::new`]).
    fn query_pages(&self, event_query: &EventQuery, page_size: usize) -> QueryPages<'_, Self>
    where
        Self: Sized,
    {
        QueryPages::new(self, event_query, page_size)
    }

    /// Appends `new_events` as one committed batch.
    fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError>;

    /// Appends `new_events` as one batch only if the context version of
    /// `context_query` equals `expected_context_version` (`None`: nothing may
    /// match); otherwise returns
    /// [`ConditionalAppendConflict`](EventStoreError::ConditionalAppendConflict).
    fn append_if(
        &self,
        new_events: Vec<NewEvent>,
        context_query: &EventQuery,
        expected_context_version: Option<u64>,
    ) -> Result<AppendResult, EventStoreError>;

    /// Delivers every batch committed from now on.
    fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError>;

    /// Delivers the events matching `event_query` of every batch committed
    /// from now on.
    fn stream_to(
        &self,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError>;

    /// Replays every committed batch after the durable cursor, then continues
    /// live; returns once the replay has finished.
    fn stream_all_durable(
        &self,
        durable_stream: &DurableStream,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError>;

    /// Replays the matching events of every committed batch after the durable
    /// cursor, then continues live; returns once the replay has finished.
    fn stream_to_durable(
        &self,
        durable_stream: &DurableStream,
        event_query: &EventQuery,
        handle: HandleStream,
    ) -> Result<EventStream, EventStoreError>;
}

macro_rules! forward_event_store {
    ($($pointer:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $pointer {
            fn query(&self, event_query: &EventQuery) -> Result<QueryResult, EventStoreError> {
                (**self).query(event_query)
            }
            fn query_page(
                &self,
                event_query: &EventQuery,
                limit: usize,
            ) -> Result<QueryResult, EventStoreError> {
                (**self).query_page(event_query, limit)
            }
            fn append(&self, new_events: Vec<NewEvent>) -> Result<AppendResult, EventStoreError> {
                (**self).append(new_events)
            }
            fn append_if(
                &self,
                new_events: Vec<NewEvent>,
                context_query: &EventQuery,
                expected_context_version: Option<u64>,
            ) -> Result<AppendResult, EventStoreError> {
                (**self).append_if(new_events, context_query, expected_context_version)
            }
            fn stream_all(&self, handle: HandleStream) -> Result<EventStream, EventStoreError> {
                (**self).stream_all(handle)
            }
            fn stream_to(
                &self,
                event_query: &EventQuery,
                handle: HandleStream,
            ) -> Result<EventStream, EventStoreError> {
                (**self).stream_to(event_query, handle)
            }
            fn stream_all_durable(
                &self,
                durable_stream: &DurableStream,
                handle: HandleStream,
            ) -> Result<EventStream, EventStoreError> {
                (**self).stream_all_durable(durable_stream, handle)
            }
            fn stream_to_durable(
                &self,
                durable_stream: &DurableStream,
                event_query: &EventQuery,
                handle: HandleStream,
            ) -> Result<EventStream, EventStoreError> {
                (**self).stream_to_durable(durable_stream, event_query, handle)
            }
        }
    )*};
}

forward_event_store!(&S, Box<S>, Arc<S>);
