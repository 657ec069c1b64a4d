//! Several processes on one schema: live delivery of other processes'
//! commits, conditional appends racing across processes, durable stream
//! exclusivity, and query snapshots while another process appends.
//!
//! The other processes are this test binary again, running `child_process`
//! with a role (see `support::ChildProcess`).

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use factstr::{
    DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, HandleStream, NewEvent,
};
use factstr_conformance::support::{Deliveries, eventually, numbered, sequence_numbers};
use factstr_postgres::PostgresStore;
use serde_json::json;
use support::{ChildProcess, new_schema, store_in};

const CHILD_TEST: &str = "child_process";
const TAGGED_BATCHES: usize = 30;
const CONDITIONAL_APPENDS_PER_PROCESS: usize = 100;
const SNAPSHOT_BATCHES: usize = 200;
const REPLAYED_BATCHES: usize = 5;

/// The helper processes' entry point; does nothing in a normal test run.
#[test]
fn child_process() {
    let Some((role, schema, worker)) = support::child_role() else {
        return;
    };
    let store = store_in(&schema);
    match role.as_str() {
        "append-tagged-batches" => append_tagged_batches(&store, worker),
        "count-with-append-if" => count_with_append_if(&store, worker),
        "hold-durable" => hold_durable(&store),
        "append-until-killed" => append_until_killed(&store),
        "append-and-report" => {
            let mut last = 0;
            for size in 1..=REPLAYED_BATCHES {
                last = store
                    .append(numbered("child", size))
                    .unwrap()
                    .last_sequence_number;
            }
            support::tell_parent(&format!("APPENDED {last}"));
        }
        "commit-without-notifying" => {
            // Two committed batches (2..=3 and 4) written as an append
            // transaction writes them, without its notification: as when
            // the notification is lost on its way.
            drop(store);
            support::execute(format!(
                "INSERT INTO {schema}.factstr_events \
                     (sequence_number, batch_last_sequence_number, occurred_at, event_type, payload) \
                 VALUES (2, 3, now(), 'child', '{{}}'), (3, 3, now(), 'child', '{{}}'), \
                        (4, 4, now(), 'child', '{{}}')"
            ));
            support::tell_parent("APPENDED 4");
        }
        "append-for-snapshots" => {
            for round in 0..SNAPSHOT_BATCHES {
                let event_type = if round % 2 == 0 { "a" } else { "b" };
                store.append(numbered(event_type, 1 + round % 3)).unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Batches of 1 to 4 events of types `a` and `b`, each event tagged with
/// its batch, its index and the batch size.
fn append_tagged_batches(store: &PostgresStore, worker: usize) {
    for batch in 0..TAGGED_BATCHES {
        let size = 1 + (batch * 7 + worker) % 4;
        let events = (0..size)
            .map(|index| {
                let event_type = if (batch + index) % 2 == 0 { "a" } else { "b" };
                NewEvent::new(
                    event_type,
                    json!({"batch": format!("{worker}-{batch}"), "index": index, "size": size}),
                )
            })
            .collect();
        store.append(events).unwrap();
    }
}

/// Increments a counter 100 times with `append_if`, retrying conflicts.
/// Each event records the context version it was appended against.
fn count_with_append_if(store: &PostgresStore, worker: usize) {
    let context = EventQuery::for_event_types(["counted"]);
    for _ in 0..CONDITIONAL_APPENDS_PER_PROCESS {
        loop {
            let seen = store.query(&context).unwrap().current_context_version;
            let event = NewEvent::new("counted", json!({"worker": worker, "seen": seen}));
            match store.append_if(vec![event], &context, seen) {
                Ok(_) => break,
                Err(EventStoreError::ConditionalAppendConflict { .. }) => {}
                Err(error) => panic!("append_if failed: {error}"),
            }
        }
    }
}

/// Holds the durable stream `exclusive` until the parent says so.
fn hold_durable(store: &PostgresStore) {
    let deliveries = Deliveries::new();
    let stream = store
        .stream_all_durable(&DurableStream::new("exclusive"), deliveries.handler())
        .unwrap();
    assert_eq!(
        sequence_numbers(&deliveries.batches().concat()),
        vec![1, 2, 3]
    );
    support::tell_parent("HOLDING");
    support::wait_for_parent();
    stream.unsubscribe();
    support::tell_parent("RELEASED");
}

/// Appends tagged batches and reports each acknowledged append, and each
/// batch its durable stream handled, until the parent kills it.
fn append_until_killed(store: &PostgresStore) {
    let _durable = store
        .stream_all_durable(
            &DurableStream::new("killed"),
            HandleStream::new(|batch: Vec<EventRecord>| {
                let last = batch.last().map_or(0, |record| record.sequence_number);
                support::tell_parent(&format!("HANDLED {last}"));
                async { Ok(()) }
            }),
        )
        .unwrap();
    for round in 0_u64.. {
        let size = 1 + round % 5;
        let events = (0..size)
            .map(|index| {
                NewEvent::new(
                    "tick",
                    json!({"batch": round, "index": index, "size": size}),
                )
            })
            .collect();
        let appended = store.append(events).unwrap();
        support::tell_parent(&format!(
            "ACK {round} {} {}",
            appended.first_sequence_number, appended.last_sequence_number
        ));
    }
}

#[test]
fn a_process_killed_while_appending_leaves_whole_batches_and_no_cursor_ahead() {
    let schema = new_schema();
    let mut child = ChildProcess::spawn(CHILD_TEST, "append-until-killed", &schema, 0);
    let mut acknowledged = Vec::new();
    let mut handled_through = 0_u64;
    let mut record_line = |line: &str, acknowledged: &mut Vec<(u64, u64, u64)>| {
        let words: Vec<&str> = line.rsplit("... ").next().unwrap().split(' ').collect();
        match words.as_slice() {
            ["ACK", round, first, last] => acknowledged.push((
                round.parse().unwrap(),
                first.parse().unwrap(),
                last.parse().unwrap(),
            )),
            ["HANDLED", last] => handled_through = handled_through.max(last.parse().unwrap()),
            _ => {}
        }
    };
    while acknowledged.len() < 40 {
        let line = child
            .read_line()
            .expect("the child ended before it was killed");
        record_line(&line, &mut acknowledged);
    }
    child.kill();
    while let Some(line) = child.read_line() {
        record_line(&line, &mut acknowledged);
    }

    let store = store_in(&schema);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = records.len() as u64;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
    // Nothing acknowledged is lost.
    for &(round, first, last) in &acknowledged {
        for record in &records[(first - 1) as usize..last as usize] {
            assert_eq!(record.payload["batch"], json!(round));
        }
    }
    // Every stored batch is whole.
    let mut start = 0;
    while start < records.len() {
        let size = records[start].payload["size"].as_u64().unwrap() as usize;
        let batch = &records[start..start + size];
        for (index, record) in batch.iter().enumerate() {
            assert_eq!(record.payload["batch"], records[start].payload["batch"]);
            assert_eq!(record.payload["index"], json!(index));
        }
        start += size;
    }

    // The stored cursor is not ahead of what the killed process handled;
    // the name is free once the server noticed the process is gone.
    let resumed = Deliveries::new();
    let mut stream = None;
    eventually(
        "the killed process's durable name becoming free",
        || match store.stream_all_durable(&DurableStream::new("killed"), resumed.handler()) {
            Ok(registered) => {
                stream = Some(registered);
                true
            }
            Err(EventStoreError::BackendFailure { message })
                if message.contains("already active") =>
            {
                false
            }
            Err(error) => panic!("registration failed: {error}"),
        },
    );
    let replayed = sequence_numbers(&resumed.batches().concat());
    let cursor = replayed.first().map_or(total, |first| first - 1);
    assert!(
        cursor <= handled_through,
        "cursor {cursor} ahead of handled {handled_through}"
    );
    assert_eq!(replayed, ((cursor + 1)..=total).collect::<Vec<_>>());
    assert_eq!(
        store
            .append(numbered("a", 1))
            .unwrap()
            .first_sequence_number,
        total + 1
    );
}

#[test]
fn live_streams_receive_every_process_commits_in_order_as_committed_batches() {
    let schema = new_schema();
    let store = Arc::new(store_in(&schema));
    let all = Deliveries::new();
    let only_b = Deliveries::new();
    let _all = store.stream_all(all.handler()).unwrap();
    let _only_b = store
        .stream_to(&EventQuery::for_event_types(["b"]), only_b.handler())
        .unwrap();

    let children: Vec<ChildProcess> = (0..2)
        .map(|worker| ChildProcess::spawn(CHILD_TEST, "append-tagged-batches", &schema, worker))
        .collect();
    append_tagged_batches(&store, 2);
    for child in children {
        child.finish();
    }

    let committed = store.query(&EventQuery::all()).unwrap().event_records;
    let total = committed.len() as u64;
    let delivered = all.wait_for_sequence(total);
    assert_eq!(
        sequence_numbers(&delivered.concat()),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(delivered.concat(), committed);
    let mut seen_batches = BTreeSet::new();
    for batch in &delivered {
        let tag = &batch[0].payload["batch"];
        assert!(
            seen_batches.insert(tag.to_string()),
            "batch {tag} delivered twice"
        );
        assert_eq!(
            batch.len() as u64,
            batch[0].payload["size"].as_u64().unwrap()
        );
        for (index, record) in batch.iter().enumerate() {
            assert_eq!(&record.payload["batch"], tag, "{batch:?} mixes batches");
            assert_eq!(record.payload["index"], json!(index));
        }
    }
    assert_eq!(seen_batches.len(), 3 * TAGGED_BATCHES);

    let committed_b: Vec<&EventRecord> = committed
        .iter()
        .filter(|record| record.event_type == "b")
        .collect();
    let delivered_b = only_b.wait_for_sequence(committed_b.last().unwrap().sequence_number);
    let mut b_by_batch: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in &committed_b {
        b_by_batch
            .entry(record.payload["batch"].to_string())
            .or_default()
            .push(record.sequence_number);
    }
    assert_eq!(delivered_b.len(), b_by_batch.len());
    for batch in &delivered_b {
        let tag = batch[0].payload["batch"].to_string();
        assert_eq!(sequence_numbers(batch), b_by_batch[&tag], "batch {tag}");
    }
}

#[test]
fn four_processes_with_a_hundred_conditional_appends_each_win_every_version_once() {
    let schema = new_schema();
    let children: Vec<ChildProcess> = (0..4)
        .map(|worker| ChildProcess::spawn(CHILD_TEST, "count-with-append-if", &schema, worker))
        .collect();
    for child in children {
        child.finish();
    }
    let store = store_in(&schema);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let total = 4 * CONDITIONAL_APPENDS_PER_PROCESS as u64;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
    let mut wins_per_worker = BTreeMap::new();
    for record in &records {
        // Each version was won by exactly the event that follows it.
        let seen = record.payload["seen"].as_u64();
        assert_eq!(
            seen,
            record.sequence_number.checked_sub(1).filter(|&v| v > 0)
        );
        *wins_per_worker
            .entry(record.payload["worker"].as_u64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        wins_per_worker.values().copied().collect::<Vec<_>>(),
        vec![CONDITIONAL_APPENDS_PER_PROCESS; 4]
    );
}

#[test]
fn a_durable_name_active_in_another_process_is_refused_until_released() {
    let schema = new_schema();
    let store = store_in(&schema);
    for _ in 0..3 {
        store.append(numbered("a", 1)).unwrap();
    }
    let mut child = ChildProcess::spawn(CHILD_TEST, "hold-durable", &schema, 0);
    child.wait_for_line("HOLDING");

    let durable = DurableStream::new("exclusive");
    let refused = Deliveries::new();
    match store.stream_all_durable(&durable, refused.handler()) {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(message.contains("exclusive"), "{message}");
            assert!(message.contains("already active"), "{message}");
        }
        other => panic!("expected BackendFailure, got {other:?}"),
    }
    assert!(refused.batches().is_empty());

    child.tell();
    child.wait_for_line("RELEASED");
    child.finish();
    store.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    // The other process handled 1..=3 and stored its cursor before it let go.
    assert_eq!(sequence_numbers(&resumed.batches().concat()), vec![4]);
}

#[test]
fn query_snapshots_stay_consistent_while_another_process_appends() {
    let schema = new_schema();
    let store = store_in(&schema);
    let mut child = ChildProcess::spawn(CHILD_TEST, "append-for-snapshots", &schema, 0);
    let mut rounds = 0_u64;
    let mut observed_growth = BTreeSet::new();
    while !child.has_exited() || rounds < 20 {
        let typed = store
            .query(&EventQuery::for_event_types(["a"]).with_min_sequence_number(rounds % 40))
            .unwrap();
        assert!(
            typed.last_returned_sequence_number <= typed.current_context_version,
            "{typed:?}"
        );
        if let Some(last) = typed.last_returned_sequence_number {
            assert_eq!(typed.current_context_version, Some(last), "{typed:?}");
        }
        let all = store.query(&EventQuery::all()).unwrap();
        let numbers = sequence_numbers(&all.event_records);
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
        assert_eq!(all.current_context_version, numbers.last().copied());
        observed_growth.insert(numbers.len());
        rounds += 1;
    }
    child.finish();
    let final_count = store.query(&EventQuery::all()).unwrap().event_records.len();
    assert_eq!(
        final_count,
        (0..SNAPSHOT_BATCHES)
            .map(|round| 1 + round % 3)
            .sum::<usize>()
    );
}

/// Waits for the child's `APPENDED <last>` line and returns `last`.
fn appended_by(child: &mut ChildProcess) -> u64 {
    loop {
        let line = child.read_line().expect("the child ended before appending");
        if let Some((_, last)) = line.split_once("APPENDED ") {
            return last.parse().unwrap();
        }
    }
}

#[test]
fn a_durable_registration_replays_what_another_process_just_committed() {
    let schema = new_schema();
    let store = store_in(&schema);
    store.append(numbered("parent", 1)).unwrap();
    let mut child = ChildProcess::spawn(CHILD_TEST, "append-and-report", &schema, 0);
    let last = appended_by(&mut child);

    // At once: this store may not have heard of the child's commits yet.
    let replayed = Deliveries::new();
    let _stream = store
        .stream_all_durable(&DurableStream::new("replays-child"), replayed.handler())
        .unwrap();
    let shapes: Vec<Vec<u64>> = replayed
        .batches()
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect();
    let mut expected = vec![vec![1]];
    let mut next = 2;
    for size in 1..=REPLAYED_BATCHES as u64 {
        expected.push((next..next + size).collect());
        next += size;
    }
    assert_eq!(next - 1, last);
    assert_eq!(shapes, expected);
    child.finish();
}

#[test]
fn a_durable_registration_replays_another_process_commit_whose_notification_never_came() {
    let schema = new_schema();
    let store = store_in(&schema);
    store.append(numbered("parent", 1)).unwrap();
    let mut child = ChildProcess::spawn(CHILD_TEST, "commit-without-notifying", &schema, 0);
    assert_eq!(appended_by(&mut child), 4);
    child.finish();

    let replayed = Deliveries::new();
    let _stream = store
        .stream_all_durable(
            &DurableStream::new("replays-silent-child"),
            replayed.handler(),
        )
        .unwrap();
    let shapes: Vec<Vec<u64>> = replayed
        .batches()
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect();
    assert_eq!(shapes, vec![vec![1], vec![2, 3], vec![4]]);
}
