//! Several processes on one schema, where PostgreSQL shows what others do
//! not: a process killed with SIGKILL while appending, and a commit whose
//! notification never came. The cases every persistent store shares (live
//! delivery of other processes' commits, conditional appends racing across
//! processes, durable stream exclusivity, query snapshots, replays of
//! another process's commits) are in the conformance suite
//! (`tests/conformance.rs`).
//!
//! The other processes are this test binary again, running `child_process`
//! with a role (see `support::ChildProcess`).

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{
    DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, HandleStream, NewEvent,
};
use factstr_conformance::support::{Deliveries, eventually, numbered, sequence_numbers};
use factstr_postgres::PostgresStore;
use serde_json::json;
use support::{ChildProcess, new_schema, store_in};

const CHILD_TEST: &str = "child_process";

/// The helper processes' entry point; does nothing in a normal test run.
#[test]
fn child_process() {
    let Some((role, schema, _worker)) = support::child_role() else {
        return;
    };
    let store = store_in(&schema);
    match role.as_str() {
        "append-until-killed" => append_until_killed(&store),
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
        other => panic!("unknown child role {other}"),
    }
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
