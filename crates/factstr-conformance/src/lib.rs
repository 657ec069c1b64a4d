//! The shared semantic suite every FACTSTR store runs.
//!
//! Each case is a function over a store factory (a function returning a fresh,
//! empty store). [`conformance_tests!`] expands every case as a `#[test]` in
//! the calling test file, through the sync and the async API, so each store
//! runs all of them both ways and no store keeps its own list:
//!
//! ```
//! fn new_store() -> factstr_memory::MemoryStore {
//!     factstr_memory::MemoryStore::new()
//! }
//!
//! factstr_conformance::conformance_tests!(new_store);
//! # fn main() {}
//! ```
//!
//! The cases are the executable form of the contract documented on
//! `factstr::EventStore`; test names are behaviour sentences.

// Each case's name is its documentation; the suite is test code.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod append;
pub mod concurrency;
pub mod conditional_append;
pub mod durable_streams;
pub mod filters;
pub mod fixtures_0_5;
pub mod live_streams;
pub mod model;
pub mod operations;
pub mod paging;
pub mod payload_predicates;
pub mod persistent;
pub mod processes;
pub mod query;
pub mod random;
pub mod runtime;
pub mod stopping;
pub mod support;
pub mod through_async;

/// Expands every conformance case as a `#[test]` running against the stores
/// made by `$new_store` (a function or closure returning a fresh store),
/// three times: through the sync [`EventStore`](factstr::EventStore) API,
/// and through the [`AsyncEventStore`](factstr::AsyncEventStore) API on a
/// multi-thread and on a current-thread tokio runtime (see
/// [`through_async`]). The store must implement both traits, as every
/// FACTSTR store does.
///
/// The tests land in modules `conformance`, `async_multi_thread` and
/// `async_current_thread`, with one submodule per area, so they show up as
/// `conformance::append::appends_get_consecutive_...`.
#[macro_export]
macro_rules! conformance_tests {
    ($new_store:expr) => {
        $crate::__conformance_case_list! { __conformance_cases { conformance, $new_store } }
        $crate::__conformance_case_list! { __conformance_cases {
            async_multi_thread,
            || $crate::through_async::ThroughAsync::new(
                ($new_store)(),
                $crate::through_async::Flavor::MultiThread,
            )
        } }
        $crate::__conformance_case_list! { __conformance_cases {
            async_current_thread,
            || $crate::through_async::ThroughAsync::new(
                ($new_store)(),
                $crate::through_async::Flavor::CurrentThread,
            )
        } }
    };
}

/// The one list of cases, handed to `$callback`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    ($callback:ident { $($arguments:tt)* }) => {
        $crate::$callback! {
            { $($arguments)* };
            append: [
                appends_get_consecutive_sequence_numbers_starting_at_one,
                append_returns_the_committed_range_and_count,
                empty_append_is_refused_with_empty_append,
                empty_conditional_append_is_refused_before_the_context_is_checked,
                events_of_one_batch_share_one_commit_time,
                commit_time_is_utc_truncated_to_microseconds,
                payloads_of_every_json_kind_read_back_unchanged,
                empty_event_type_is_invalid_input_and_writes_nothing,
                invalid_event_anywhere_in_a_batch_writes_nothing_of_it,
                too_deeply_nested_payload_is_invalid_input,
                event_type_longer_than_the_shared_limit_is_invalid_input,
                failed_append_consumes_no_sequence_number,
            ],
            paging: [
                a_page_holds_at_most_the_limit_and_the_next_continues_after_it,
                pages_of_a_filtered_query_agree_with_the_whole_query,
                query_pages_of_nothing_yield_no_page,
                a_page_limit_of_zero_is_invalid_input,
                a_page_context_version_guards_a_conditional_append,
            ],
            query: [
                query_returns_records_in_ascending_sequence_order,
                min_sequence_number_is_an_exclusive_cursor,
                last_returned_sequence_number_is_the_last_record_or_none,
                context_version_ignores_min_sequence_number,
                context_version_is_none_when_nothing_matches,
                query_on_an_empty_store_returns_nothing,
                cursor_beyond_the_log_returns_no_records_but_the_context_version,
                min_sequence_number_beyond_the_sequence_range_is_invalid_input,
            ],
            filters: [
                no_filters_and_an_empty_filter_list_match_every_event,
                filters_are_alternatives,
                event_types_none_does_not_constrain_the_type,
                empty_event_type_list_matches_nothing,
                event_types_match_exactly_and_case_sensitively,
                type_part_and_payload_part_must_both_match,
                empty_predicate_list_matches_nothing,
                any_predicate_of_a_filter_may_match,
            ],
            payload_predicates: [
                scalar_predicates_need_equal_scalars,
                integer_and_float_predicates_do_not_match_each_other,
                object_predicate_matches_a_superset_object,
                empty_object_predicate_matches_any_object_only,
                null_valued_key_must_be_present_and_null,
                nested_object_predicates_match_recursively,
                array_predicate_elements_match_anywhere_in_the_array,
                empty_array_predicate_matches_any_array_only,
                arrays_of_objects_match_recursively,
                scalar_predicate_never_matches_an_array,
                type_mismatches_never_match,
                payload_predicates_decide_conditional_append_contexts,
                payload_predicates_filter_live_streams,
                narrowed_queries_agree_with_the_shared_matcher,
            ],
            conditional_append: [
                append_if_with_no_expected_version_succeeds_on_an_empty_context,
                append_if_with_no_expected_version_conflicts_once_the_context_has_events,
                append_if_with_the_current_version_succeeds,
                stale_expected_version_conflicts_and_reports_the_actual_version,
                conflict_writes_nothing_and_consumes_no_sequence_number,
                append_if_ignores_the_context_query_min_sequence_number,
                events_outside_the_context_do_not_change_its_version,
                appended_events_become_the_new_context_version,
                expected_version_beyond_the_sequence_range_is_invalid_input,
            ],
            live_streams: [
                stream_all_delivers_each_committed_batch_as_one_batch,
                live_streams_never_replay_history,
                stream_to_delivers_the_matching_events_of_each_batch_as_one_batch,
                stream_to_delivers_nothing_for_batches_without_matches,
                stream_to_ignores_min_sequence_number,
                several_streams_each_receive_every_batch_meant_for_them,
                failed_appends_deliver_nothing,
                live_record_equals_the_queried_record,
                handler_is_awaited_before_the_next_batch,
                handlers_can_use_tokio_timers_and_tasks,
                a_task_one_handler_spawns_and_blocks_does_not_stall_other_streams_timers,
                slow_handler_delays_neither_other_streams_nor_appends,
                handler_error_keeps_a_live_stream_subscribed,
                handler_panic_keeps_a_live_stream_subscribed_and_spares_other_streams,
                unsubscribe_stops_future_deliveries,
                dropping_the_event_stream_unsubscribes,
                unsubscribing_from_inside_the_own_handler_does_not_deadlock,
                stream_ids_are_distinct,
                lagging_stream_catches_up_without_loss,
            ],
            durable_streams: [
                first_registration_replays_every_batch_with_its_shape,
                registration_returns_after_the_replay_finished,
                durable_stream_continues_live_after_replay,
                re_registration_resumes_after_the_cursor,
                stream_to_durable_replays_only_matching_events_per_batch,
                replay_handler_error_fails_registration_and_keeps_the_cursor,
                replay_handler_panic_fails_registration_and_keeps_the_cursor,
                live_handler_error_stops_the_durable_stream_and_redelivers_on_re_registration,
                registering_an_active_name_is_a_backend_failure,
                registering_a_name_with_a_different_query_is_a_backend_failure,
                min_sequence_number_does_not_change_a_durable_query,
                empty_durable_name_is_invalid_input,
                name_is_free_again_after_unsubscribe,
                re_registration_waits_for_an_unsubscribed_stream_to_finish_its_handler,
                a_handler_re_registering_its_own_stopped_name_is_refused_not_deadlocked,
                durable_streams_with_different_names_keep_separate_cursors,
            ],
            concurrency: [
                concurrent_conditional_appends_on_one_context_have_one_winner_per_version,
                concurrent_appends_are_gapless,
                streams_see_strictly_increasing_sequences_under_concurrent_appends,
                durable_registration_during_concurrent_appends_delivers_every_event_once_in_order,
                query_snapshot_is_consistent_under_concurrent_appends,
                disjoint_contexts_do_not_conflict,
            ],
            runtime: [
                methods_work_inside_a_current_thread_runtime,
                methods_work_inside_a_multi_thread_runtime,
                methods_work_inside_a_stream_handler,
                store_is_usable_as_a_shared_trait_object,
                dropping_the_store_inside_a_runtime_with_active_streams_does_not_panic,
            ],
            stopping: [
                batches_committed_before_unsubscribe_are_still_delivered,
                an_unsubscribed_stream_reports_that_it_stopped,
                dropping_the_store_first_delivers_committed_batches_to_live_streams,
                dropping_the_store_waits_only_a_bounded_time_for_a_stuck_handler,
                a_durable_stream_that_fails_live_reports_why_it_stopped,
                a_durable_stream_whose_handler_panics_live_reports_the_panic,
                a_live_stream_keeps_running_after_a_handler_error,
                a_stop_callback_registered_after_the_stop_runs_at_once,
            ],
        }
    };
}

/// Expands every case for persistent stores (see [`persistent`],
/// [`processes`], [`operations`] and [`model`]) as a `#[test]`, in a module
/// `persistent_conformance`. The store implements
/// [`StoreOperations`](factstr::backend::StoreOperations) too (what the
/// `factstr` command uses):
///
/// ```text
/// factstr_conformance::persistent_conformance_tests! {
///     // A fresh, empty place for a log (a file's folder, a schema), kept
///     // as long as the returned value lives.
///     new_location: new_folder,
///     // The place's address: a string a child process can be given.
///     address: database_path,
///     // A store instance on the place an address names (called several
///     // times per case, also in child processes).
///     open: open_database,
///     // A fresh reference store for the differential model test.
///     reference: factstr_memory::MemoryStore::new,
///     // How many random operation runs the model test makes.
///     random_cases: 48,
/// }
/// ```
///
/// It also generates the test `child_process`, which the cases across
/// processes run in child processes (see [`processes`]); in a normal run it
/// passes at once.
#[macro_export]
macro_rules! persistent_conformance_tests {
    (
        new_location: $new_location:expr,
        address: $address:expr,
        open: $open:expr,
        reference: $reference:expr,
        random_cases: $random_cases:expr $(,)?
    ) => {
        #[allow(non_snake_case)]
        mod persistent_conformance {
            #[allow(unused_imports)]
            use super::*;

            /// Where `child_process` is, for the cases that start it.
            const CHILD_PROCESS_MODULE: &str = module_path!();

            #[test]
            fn child_process() {
                $crate::processes::run_child(&$open);
            }

            $crate::__persistent_cases! {
                { $new_location, $address, $open, super::CHILD_PROCESS_MODULE };
                persistent: [
                    durable_registration_replays_what_another_instance_just_committed,
                    a_reopened_store_resumes_a_durable_stream_after_its_cursor,
                    closing_a_store_keeps_the_cursor_of_the_batch_its_stream_was_handling,
                    live_streams_receive_batches_another_instance_commits,
                    events_batch_shapes_and_commit_times_survive_reopening,
                    sequence_numbers_and_commit_times_continue_after_reopening,
                    outcomes_of_conditional_appends_survive_reopening,
                    a_reopened_durable_stream_resumes_strictly_after_its_cursor_with_what_others_appended,
                    pending_cursors_are_kept_when_the_stream_or_the_store_closes,
                    durable_query_survives_reopening_and_a_different_query_is_refused,
                    a_reopened_store_continues_the_log_and_a_filtered_durable_stream,
                    a_durable_stream_runs_in_one_instance_at_a_time,
                    conditional_appends_through_two_instances_win_each_version_once,
                ],
                processes: [
                    processes_appending_conditionally_to_one_context_win_each_version_once,
                    a_durable_registration_replays_what_another_process_just_committed,
                    a_durable_name_active_in_another_process_is_refused_until_released,
                    live_streams_receive_every_process_commits_in_order_as_committed_batches,
                    query_snapshots_stay_consistent_while_another_process_appends,
                ],
                operations: [
                    an_import_reaches_live_streams_and_a_misfit_writes_nothing,
                    durable_cursors_move_only_while_the_stream_is_stopped,
                ],
            }

            mod model {
                #[allow(unused_imports)]
                use super::super::*;

                #[test]
                fn the_store_agrees_with_the_reference_on_random_operations() {
                    $crate::model::the_store_agrees_with_the_reference_on_random_operations(
                        &$crate::persistent::Persistent::new(
                            &$new_location,
                            &$address,
                            &$open,
                            super::CHILD_PROCESS_MODULE,
                        ),
                        &$reference,
                        $random_cases,
                    );
                }

                #[test]
                fn long_replays_keep_every_batch_whole_and_agree_with_the_reference() {
                    $crate::model::long_replays_keep_every_batch_whole_and_agree_with_the_reference(
                        &$crate::persistent::Persistent::new(
                            &$new_location,
                            &$address,
                            &$open,
                            super::CHILD_PROCESS_MODULE,
                        ),
                        &$reference,
                    );
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __persistent_cases {
    (
        { $new_location:expr, $address:expr, $open:expr, $module_path:expr };
        $($area:ident: [$($case:ident),* $(,)?]),* $(,)?
    ) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::super::*;
                $(
                    #[test]
                    fn $case() {
                        $crate::$area::$case(&$crate::persistent::Persistent::new(
                            &$new_location,
                            &$address,
                            &$open,
                            $module_path,
                        ));
                    }
                )*
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ({ $module:ident, $new_store:expr }; $($area:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $module {
            $(
                mod $area {
                    #[allow(unused_imports)]
                    use super::super::*;
                    $(
                        #[test]
                        fn $case() {
                            $crate::$area::$case(&$new_store);
                        }
                    )*
                }
            )*
        }
    };
}
