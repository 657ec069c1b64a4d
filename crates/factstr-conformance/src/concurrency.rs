//! Concurrency: atomic conditional appends, gapless sequences, ordered
//! delivery and consistent snapshots while many threads append.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError};
use serde_json::json;

use crate::support::{Deliveries, event, numbered, sequence_numbers};

pub fn concurrent_conditional_appends_on_one_context_have_one_winner_per_version<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    const THREADS: usize = 8;
    const CYCLES: usize = 50;
    let store = Arc::new(new_store());
    let context = EventQuery::for_event_types(["counter-incremented"]);
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|worker| {
            let (store, context, barrier) =
                (Arc::clone(&store), context.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut wins = Vec::new();
                for cycle in 0..CYCLES {
                    loop {
                        let seen = store.query(&context).unwrap().current_context_version;
                        let new_event = event(
                            "counter-incremented",
                            json!({"worker": worker, "cycle": cycle}),
                        );
                        match store.append_if(vec![new_event], &context, seen) {
                            Ok(result) => {
                                wins.push((seen, result.first_sequence_number));
                                break;
                            }
                            Err(EventStoreError::ConditionalAppendConflict {
                                expected,
                                actual,
                            }) => {
                                assert_eq!(expected, seen);
                                assert!(actual > seen, "actual {actual:?} not after {seen:?}");
                            }
                            Err(error) => panic!("append_if failed: {error}"),
                        }
                    }
                }
                wins
            })
        })
        .collect();
    let wins: Vec<(Option<u64>, u64)> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    let total = (THREADS * CYCLES) as u64;
    assert_eq!(wins.len() as u64, total);
    let mut by_version = BTreeMap::new();
    for (expected, sequence) in wins {
        assert!(
            by_version.insert(expected, sequence).is_none(),
            "version {expected:?} won twice"
        );
        assert_eq!(sequence, expected.unwrap_or(0) + 1);
    }
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
}

pub fn concurrent_appends_are_gapless<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                (0..50)
                    .map(|round| {
                        let result = store
                            .append(numbered("a", 1 + (worker + round) % 3))
                            .unwrap();
                        assert_eq!(
                            result.committed_count,
                            result.last_sequence_number - result.first_sequence_number + 1
                        );
                        (result.first_sequence_number, result.last_sequence_number)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ranges: Vec<(u64, u64)> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    ranges.sort_unstable();
    let mut next = 1;
    for (first, last) in &ranges {
        assert_eq!(*first, next, "ranges {ranges:?}");
        next = last + 1;
    }
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(sequence_numbers(&records), (1..next).collect::<Vec<_>>());
}

pub fn streams_see_strictly_increasing_sequences_under_concurrent_appends<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let all = Deliveries::new();
    let only_a = Deliveries::new();
    let _all = store.stream_all(all.handler()).unwrap();
    let _only_a = store
        .stream_to(&EventQuery::for_event_types(["a"]), only_a.handler())
        .unwrap();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for round in 0..50 {
                    let event_type = if (worker + round) % 2 == 0 { "a" } else { "b" };
                    store.append(numbered(event_type, 1 + round % 2)).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = records.len() as u64;
    let delivered = sequence_numbers(&all.wait_for_sequence(total).concat());
    assert_eq!(delivered, (1..=total).collect::<Vec<_>>());
    let expected_a: Vec<u64> = records
        .iter()
        .filter(|record| record.event_type == "a")
        .map(|record| record.sequence_number)
        .collect();
    let delivered_a = sequence_numbers(
        &only_a
            .wait_for_sequence(*expected_a.last().unwrap())
            .concat(),
    );
    assert_eq!(delivered_a, expected_a);
}

pub fn durable_registration_during_concurrent_appends_delivers_every_event_once_in_order<S>(
    new_store: &dyn Fn() -> S,
) where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    for _ in 0..20 {
        store.append(numbered("a", 5)).unwrap();
    }
    let running = Arc::new(AtomicBool::new(true));
    let barrier = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (store, running, barrier) = (
                Arc::clone(&store),
                Arc::clone(&running),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                let mut appended = 0;
                while running.load(Ordering::SeqCst) || appended < 30 {
                    store.append(numbered("a", 2)).unwrap();
                    appended += 1;
                }
            })
        })
        .collect();
    barrier.wait();
    let deliveries = Deliveries::new();
    let stream = store
        .stream_all_durable(
            &DurableStream::new("joins-while-busy"),
            deliveries.handler(),
        )
        .unwrap();
    running.store(false, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    let total = store
        .query(&EventQuery::all())
        .unwrap()
        .current_context_version
        .unwrap();
    let delivered = sequence_numbers(&deliveries.wait_for_sequence(total).concat());
    assert_eq!(delivered, (1..=total).collect::<Vec<_>>());
    drop(stream);
}

pub fn query_snapshot_is_consistent_under_concurrent_appends<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    const BATCHES_PER_WRITER: usize = 150;
    let store = Arc::new(new_store());
    let writers_done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|event_type| {
            let (store, writers_done) = (Arc::clone(&store), Arc::clone(&writers_done));
            thread::spawn(move || {
                for round in 0..BATCHES_PER_WRITER {
                    store.append(numbered(event_type, 1 + round % 3)).unwrap();
                }
                writers_done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let mut rounds = 0_u64;
    while writers_done.load(Ordering::SeqCst) < 2 || rounds < 20 {
        let typed = store
            .query(&EventQuery::for_event_types(["a"]).with_min_sequence_number(rounds))
            .unwrap();
        if let Some(last) = typed.last_returned_sequence_number {
            assert_eq!(typed.current_context_version, Some(last), "{typed:?}");
        }
        let all = store.query(&EventQuery::all()).unwrap();
        let numbers = sequence_numbers(&all.event_records);
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
        assert_eq!(all.current_context_version, numbers.last().copied());
        rounds += 1;
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

pub fn disjoint_contexts_do_not_conflict<S>(new_store: &dyn Fn() -> S)
where
    S: EventStore + Send + Sync + 'static,
{
    let store = Arc::new(new_store());
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let event_type = format!("owned-by-{worker}");
                let context = EventQuery::for_event_types([event_type.clone()]);
                let mut version = None;
                for _ in 0..25 {
                    let result = store
                        .append_if(vec![event(&event_type, json!({}))], &context, version)
                        .unwrap();
                    version = Some(result.last_sequence_number);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len(),
        100
    );
}
