//! Cases for stores that keep their log in a place several store instances
//! (and processes) can open: a file, a database schema. These cases open
//! several instances on one place, in turn (reopening) or at once.
//!
//! [`persistent_conformance_tests!`](crate::persistent_conformance_tests)
//! runs each case with a [`Persistent`]: how to make a fresh place, name it
//! with an address (a string a child process can be given) and open one
//! more store instance on an address. Cases across processes are in
//! [`crate::processes`], the differential model test in [`crate::model`].

use std::sync::{Arc, mpsc};

use factstr::{
    DurableStream, EventFilter, EventQuery, EventRecord, EventStore, EventStoreError, EventStream,
    NewEvent, StreamStopReason,
};
use serde_json::json;

use crate::processes::ChildProcess;
use crate::support::{Deliveries, PATIENCE, eventually, numbered, sequence_numbers};

/// A persistent store under test: how to make places for logs and open
/// store instances on them.
pub struct Persistent<'a, L, S> {
    new_location: &'a dyn Fn() -> L,
    address: &'a dyn Fn(&L) -> String,
    open: &'a dyn Fn(&str) -> S,
    child_test: String,
}

impl<'a, L, S: EventStore> Persistent<'a, L, S> {
    /// `new_location` makes a fresh, empty place (kept as long as its
    /// value lives), `address` names it, `open` opens a store instance on
    /// the place an address names. `module_path` is the `module_path!()`
    /// of the module holding the generated `child_process` test.
    pub fn new(
        new_location: &'a dyn Fn() -> L,
        address: &'a dyn Fn(&L) -> String,
        open: &'a dyn Fn(&str) -> S,
        module_path: &str,
    ) -> Self {
        // Test names leave out the crate's name, the first segment.
        let module = module_path
            .split_once("::")
            .map_or("", |(_, module)| module);
        let child_test = if module.is_empty() {
            "child_process".to_owned()
        } else {
            format!("{module}::child_process")
        };
        Self {
            new_location,
            address,
            open,
            child_test,
        }
    }

    /// A fresh, empty place for a log.
    pub fn new_location(&self) -> L {
        (self.new_location)()
    }

    /// One more store instance on `location`.
    pub fn open(&self, location: &L) -> S {
        (self.open)(&(self.address)(location))
    }

    /// Starts a child process that opens `location` and plays `role` (see
    /// [`crate::processes`]).
    pub fn spawn_child(&self, role: &str, location: &L, worker: usize) -> ChildProcess {
        ChildProcess::spawn(&self.child_test, role, &(self.address)(location), worker)
    }
}

fn shapes(batches: &[Vec<EventRecord>]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect()
}

fn wait_until_stopped(stream: EventStream) -> StreamStopReason {
    let (sender, receiver) = mpsc::channel();
    stream.on_stop(move |reason| {
        let _ = sender.send(reason.clone());
    });
    drop(stream);
    receiver.recv_timeout(PATIENCE).expect("the stream stopped")
}

pub fn durable_registration_replays_what_another_instance_just_committed<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let first = store.open(&location);
    let second = store.open(&location);
    first.append(numbered("a", 1)).unwrap();
    first.append(numbered("a", 2)).unwrap();
    first.append(numbered("a", 1)).unwrap();
    // Registered at once: the second instance may not have heard of these
    // commits yet, but its replay must hold every one of them.
    let deliveries = Deliveries::new();
    let _stream = second
        .stream_all_durable(&DurableStream::new("everything"), deliveries.handler())
        .unwrap();
    assert_eq!(
        shapes(&deliveries.batches()),
        vec![vec![1], vec![2, 3], vec![4]]
    );
}

pub fn a_reopened_store_resumes_a_durable_stream_after_its_cursor<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let durable = DurableStream::new("projection");
    {
        let instance = store.open(&location);
        instance.append(numbered("a", 2)).unwrap();
        let deliveries = Deliveries::new();
        let stream = instance
            .stream_all_durable(&durable, deliveries.handler())
            .unwrap();
        instance.append(numbered("a", 1)).unwrap();
        deliveries.wait_for_sequence(3);
        assert_eq!(wait_until_stopped(stream), StreamStopReason::Unsubscribed);
    }
    let instance = store.open(&location);
    instance.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![4]]);
}

pub fn closing_a_store_keeps_the_cursor_of_the_batch_its_stream_was_handling<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let durable = DurableStream::new("slow");
    {
        let instance = store.open(&location);
        let deliveries = Deliveries::new();
        let slow = {
            let deliveries = Arc::clone(&deliveries);
            factstr::HandleStream::new(move |batch| {
                let deliveries = Arc::clone(&deliveries);
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    deliveries.record(batch);
                    Ok(())
                }
            })
        };
        let _stream = instance.stream_all_durable(&durable, slow).unwrap();
        instance.append(numbered("a", 1)).unwrap();
        instance.append(numbered("a", 1)).unwrap();
        // Closed while the handler works on batch 1 and batch 2 waits: both
        // are delivered and their cursor is kept.
    }
    let instance = store.open(&location);
    instance.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![3]]);
}

pub fn live_streams_receive_batches_another_instance_commits<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let watching = store.open(&location);
    let other = store.open(&location);
    let all = Deliveries::new();
    let only_b = Deliveries::new();
    let _all = watching.stream_all(all.handler()).unwrap();
    let _only_b = watching
        .stream_to(&EventQuery::for_event_types(["b"]), only_b.handler())
        .unwrap();

    other.append(numbered("a", 2)).unwrap();
    other.append(numbered("b", 1)).unwrap();
    other.append(numbered("a", 1)).unwrap();
    all.wait_for_sequence(4);
    watching.append(numbered("b", 2)).unwrap();

    let batches = all.wait_for_sequence(6);
    assert_eq!(
        shapes(&batches),
        vec![vec![1, 2], vec![3], vec![4], vec![5, 6]]
    );
    assert_eq!(only_b.wait_for_sequence(6).concat().len(), 3);
    assert_eq!(shapes(&only_b.batches()), vec![vec![3], vec![5, 6]]);
}

pub fn events_batch_shapes_and_commit_times_survive_reopening<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let before = {
        let instance = store.open(&location);
        instance.append(numbered("a", 3)).unwrap();
        instance
            .append(vec![NewEvent::new(
                "b",
                json!({"nested": [1, {"x": null}], "f": 1.5}),
            )])
            .unwrap();
        instance
            .append(vec![
                NewEvent::new("c", json!("text")),
                NewEvent::new("c", json!([true, false])),
            ])
            .unwrap();
        instance.query(&EventQuery::all()).unwrap()
    };

    let instance = store.open(&location);
    assert_eq!(instance.query(&EventQuery::all()).unwrap(), before);
    let replayed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&DurableStream::new("shapes"), replayed.handler())
        .unwrap();
    assert_eq!(
        shapes(&replayed.batches()),
        vec![vec![1, 2, 3], vec![4], vec![5, 6]]
    );
    assert_eq!(replayed.batches().concat(), before.event_records);
}

pub fn sequence_numbers_and_commit_times_continue_after_reopening<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let first = {
        let instance = store.open(&location);
        instance.append(numbered("a", 2)).unwrap();
        instance.query(&EventQuery::all()).unwrap().event_records
    };
    let instance = store.open(&location);
    let result = instance.append(numbered("a", 1)).unwrap();
    assert_eq!(result.first_sequence_number, 3);
    let records = instance.query(&EventQuery::all()).unwrap().event_records;
    assert!(records[2].occurred_at >= first[1].occurred_at);
}

pub fn outcomes_of_conditional_appends_survive_reopening<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let account = EventQuery::all().with_filters([EventFilter::for_event_types(["deposited"])
        .with_payload_predicates([json!({"account": "a1"})])]);
    let deposit = |amount: u64| {
        vec![NewEvent::new(
            "deposited",
            json!({"account": "a1", "amount": amount}),
        )]
    };
    {
        let instance = store.open(&location);
        instance.append_if(deposit(1), &account, None).unwrap();
        let conflict = instance.append_if(deposit(2), &account, None);
        assert_eq!(
            conflict,
            Err(EventStoreError::ConditionalAppendConflict {
                expected: None,
                actual: Some(1)
            })
        );
        instance
            .append(vec![NewEvent::new("deposited", json!({"account": "a2"}))])
            .unwrap();
        instance.append_if(deposit(3), &account, Some(1)).unwrap();
    }

    let instance = store.open(&location);
    let result = instance.query(&account).unwrap();
    assert_eq!(sequence_numbers(&result.event_records), vec![1, 3]);
    assert_eq!(result.current_context_version, Some(3));
    let amounts: Vec<_> = result
        .event_records
        .iter()
        .map(|record| record.payload["amount"].clone())
        .collect();
    assert_eq!(amounts, vec![json!(1), json!(3)]);
    // The conflict consumed no sequence number, before or after reopening.
    assert_eq!(
        instance.append_if(deposit(4), &account, Some(1)),
        Err(EventStoreError::ConditionalAppendConflict {
            expected: Some(1),
            actual: Some(3)
        })
    );
    assert_eq!(
        instance
            .append_if(deposit(4), &account, Some(3))
            .unwrap()
            .first_sequence_number,
        4
    );
}

pub fn a_reopened_durable_stream_resumes_strictly_after_its_cursor_with_what_others_appended<
    L,
    S: EventStore,
>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let durable = DurableStream::new("projection");
    {
        let instance = store.open(&location);
        instance.append(numbered("a", 2)).unwrap();
        let first = Deliveries::new();
        let stream = instance
            .stream_all_durable(&durable, first.handler())
            .unwrap();
        instance.append(numbered("a", 3)).unwrap();
        first.wait_for_sequence(5);
        drop(stream);
    }
    {
        let instance = store.open(&location);
        instance.append(numbered("b", 1)).unwrap();
        instance.append(numbered("b", 2)).unwrap();
    }

    let instance = store.open(&location);
    let resumed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![6], vec![7, 8]]);
}

pub fn pending_cursors_are_kept_when_the_stream_or_the_store_closes<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    for close_store_first in [false, true] {
        let durable = DurableStream::new(format!("closing-{close_store_first}"));
        let instance = store.open(&location);
        let last = instance
            .append(numbered("a", 4))
            .unwrap()
            .last_sequence_number;
        let replayed = Deliveries::new();
        // Registration returns after the replay; its cursor may still be
        // pending.
        let stream = instance
            .stream_all_durable(&durable, replayed.handler())
            .unwrap();
        assert_eq!(replayed.sequence_numbers().last(), Some(&last));
        if close_store_first {
            drop(instance);
            drop(stream);
        } else {
            drop(stream);
            drop(instance);
        }
        let reopened = store.open(&location);
        let again = Deliveries::new();
        let _stream = reopened
            .stream_all_durable(&durable, again.handler())
            .unwrap();
        assert_eq!(again.sequence_numbers(), Vec::<u64>::new());
    }
}

pub fn durable_query_survives_reopening_and_a_different_query_is_refused<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let durable = DurableStream::new("only-a");
    let only_a = EventQuery::for_event_types(["a"]);
    {
        let instance = store.open(&location);
        instance.append(numbered("a", 1)).unwrap();
        instance.append(numbered("b", 1)).unwrap();
        let deliveries = Deliveries::new();
        let _stream = instance
            .stream_to_durable(&durable, &only_a, deliveries.handler())
            .unwrap();
        assert_eq!(deliveries.sequence_numbers(), vec![1]);
    }
    let instance = store.open(&location);
    let refused = instance.stream_to_durable(
        &durable,
        &EventQuery::for_event_types(["b"]),
        Deliveries::new().handler(),
    );
    assert!(
        matches!(refused, Err(EventStoreError::BackendFailure { ref message }) if message.contains("different query")),
        "{refused:?}"
    );
    instance.append(numbered("a", 1)).unwrap();
    let deliveries = Deliveries::new();
    let _stream = instance
        .stream_to_durable(&durable, &only_a, deliveries.handler())
        .unwrap();
    assert_eq!(deliveries.sequence_numbers(), vec![3]);
}

pub fn a_reopened_store_continues_the_log_and_a_filtered_durable_stream<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let durable = DurableStream::new("projection");
    let only_b = EventQuery::for_event_types(["b"]);
    let before = {
        let instance = store.open(&location);
        instance.append(numbered("a", 2)).unwrap();
        instance.append(numbered("b", 3)).unwrap();
        let handled = Deliveries::new();
        let stream = instance
            .stream_to_durable(&durable, &only_b, handled.handler())
            .unwrap();
        assert_eq!(handled.sequence_numbers(), vec![3, 4, 5]);
        stream.unsubscribe();
        instance.append(numbered("b", 1)).unwrap();
        instance.query(&EventQuery::all()).unwrap().event_records
    };

    let instance = store.open(&location);
    // The same records, commit times included.
    assert_eq!(
        instance.query(&EventQuery::all()).unwrap().event_records,
        before
    );
    let next = instance.append(numbered("a", 1)).unwrap();
    assert_eq!(next.first_sequence_number, 7);

    let resumed = Deliveries::new();
    let _stream = instance
        .stream_to_durable(&durable, &only_b, resumed.handler())
        .unwrap();
    assert_eq!(shapes(&resumed.batches()), vec![vec![6]]);
    instance.append(numbered("b", 2)).unwrap();
    assert_eq!(
        sequence_numbers(&resumed.wait_for_sequence(9).concat()),
        vec![6, 8, 9]
    );
}

pub fn a_durable_stream_runs_in_one_instance_at_a_time<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let first = store.open(&location);
    let second = store.open(&location);
    first.append(numbered("a", 3)).unwrap();
    let durable = DurableStream::new("projection");

    let running = Deliveries::new();
    let stream = first
        .stream_all_durable(&durable, running.handler())
        .unwrap();
    let refused = second.stream_all_durable(&durable, Deliveries::new().handler());
    assert!(
        matches!(refused, Err(EventStoreError::BackendFailure { ref message }) if message.contains("already active")),
        "{refused:?}"
    );

    // The name is free once the stream has stopped (a store may release
    // its claim on the stream's own thread after writing its cursor).
    assert_eq!(wait_until_stopped(stream), StreamStopReason::Unsubscribed);
    second.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = second
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    // The first instance kept its cursor when the stream closed.
    assert_eq!(resumed.sequence_numbers(), vec![4]);
}

pub fn conditional_appends_through_two_instances_win_each_version_once<L, S>(
    store: &Persistent<'_, L, S>,
) where
    S: EventStore + Send + Sync + 'static,
{
    const THREADS: usize = 6;
    const WINS_PER_THREAD: usize = 25;
    let location = store.new_location();
    let instances = [
        Arc::new(store.open(&location)),
        Arc::new(store.open(&location)),
    ];
    let context = EventQuery::for_event_types(["counter-incremented"]);
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let instance = Arc::clone(&instances[thread % 2]);
            let context = context.clone();
            std::thread::spawn(move || {
                for _ in 0..WINS_PER_THREAD {
                    loop {
                        let seen = instance.query(&context).unwrap().current_context_version;
                        let event = NewEvent::new("counter-incremented", json!({"expected": seen}));
                        match instance.append_if(vec![event], &context, seen) {
                            Ok(_) => break,
                            Err(EventStoreError::ConditionalAppendConflict { .. }) => {}
                            Err(error) => panic!("{error}"),
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let records = instances[0]
        .query(&EventQuery::all())
        .unwrap()
        .event_records;
    assert_eq!(records.len(), THREADS * WINS_PER_THREAD);
    for record in &records {
        let expected = record.payload["expected"].as_u64().unwrap_or(0);
        assert_eq!(expected, record.sequence_number - 1);
    }
    eventually("both instances agreeing", || {
        instances[1]
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            == records
    });
}
