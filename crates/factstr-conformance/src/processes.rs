//! Cases across processes on one place, and the protocol their child
//! processes follow.
//!
//! A child process is the calling test binary again, running only the
//! `child_process` test that
//! [`persistent_conformance_tests!`](crate::persistent_conformance_tests)
//! generates: [`run_child`] does nothing unless [`ROLE`] names a role, so
//! the test passes at once in a normal run. A child opens the place its
//! parent gave as an address, plays its role, and talks to its parent in
//! lines: it prints `@MESSAGE` on stdout ([`tell_parent`]) and waits for a
//! line on stdin ([`wait_for_parent`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use factstr::{DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent};
use serde_json::json;

use crate::persistent::Persistent;
use crate::support::{Deliveries, numbered, sequence_numbers};

/// The environment variable naming a child's role.
pub const ROLE: &str = "FACTSTR_CONFORMANCE_CHILD_ROLE";
/// The environment variable holding the address of the child's place.
pub const ADDRESS: &str = "FACTSTR_CONFORMANCE_CHILD_ADDRESS";
/// The environment variable numbering a child among its siblings.
pub const WORKER: &str = "FACTSTR_CONFORMANCE_CHILD_WORKER";

/// A child process playing a role on a place (see the module docs).
pub struct ChildProcess {
    process: Option<Child>,
    stdout: BufReader<ChildStdout>,
    role: String,
}

impl ChildProcess {
    /// Runs the test `child_test` of the current test binary as a child
    /// playing `role` on the place `address` names.
    pub fn spawn(child_test: &str, role: &str, address: &str, worker: usize) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(ADDRESS, address)
            .env(WORKER, worker.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(process.stdout.take().unwrap());
        Self {
            process: Some(process),
            stdout,
            role: role.to_owned(),
        }
    }

    /// The child's next message (what followed `@` on a line of its
    /// output), `None` once its output ended.
    pub fn next_message(&mut self) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            // The test harness may have printed the test's name before it.
            if let Some((_, message)) = line.trim_end().split_once('@') {
                return Some(message.to_owned());
            }
        }
    }

    /// Waits for the child's message `expected`; panics if its output ends
    /// first.
    pub fn wait_for(&mut self, expected: &str) {
        loop {
            match self.next_message() {
                Some(message) if message == expected => return,
                Some(_) => {}
                None => panic!("child {} ended before saying {expected}", self.role),
            }
        }
    }

    /// Tells the child to go on.
    pub fn tell(&mut self) {
        let stdin = self.process().stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Whether the child has ended.
    pub fn has_exited(&mut self) -> bool {
        self.process().try_wait().unwrap().is_some()
    }

    /// Waits for the child and asserts it succeeded.
    pub fn finish(mut self) {
        let mut process = self.process.take().unwrap();
        drop(process.stdin.take());
        let status = process.wait().unwrap();
        assert!(status.success(), "child {} failed: {status}", self.role);
    }

    fn process(&mut self) -> &mut Child {
        self.process.as_mut().unwrap()
    }
}

impl Drop for ChildProcess {
    /// A case that failed leaves no child behind.
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Prints `message` for the parent, on a line of its own (written to
/// stdout directly: the test harness may capture `println!`).
pub fn tell_parent(message: &str) {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(format!("\n@{message}\n").as_bytes())
        .unwrap();
    stdout.flush().unwrap();
}

/// Waits for the parent's go-ahead (a line on stdin, or its end).
pub fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

const CONTENDING_PROCESSES: usize = 4;
const APPENDS_PER_PROCESS: usize = 100;
const REPLAYED_BATCHES: usize = 6;
const TAGGED_BATCHES: usize = 30;
const SNAPSHOT_BATCHES: usize = 200;

/// The body of the generated `child_process` test: plays the role named
/// in the environment on a store `open` opens, or does nothing.
pub fn run_child<S: EventStore>(open: &dyn Fn(&str) -> S) {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let address = std::env::var(ADDRESS).unwrap();
    let worker: usize = std::env::var(WORKER).unwrap().parse().unwrap();
    let store = open(&address);
    match role.as_str() {
        "append-conditionally" => append_conditionally(&store, worker),
        "append-batches" => append_batches(&store, worker),
        "hold-durable" => hold_durable(&store),
        "append-tagged-batches" => append_tagged_batches(&store, worker),
        "append-for-snapshots" => append_for_snapshots(&store),
        other => panic!("unknown child role {other}"),
    }
}

/// Child: conditional appends to the one shared context, each retried on
/// conflict; every event names the version it was decided on.
fn append_conditionally(store: &impl EventStore, worker: usize) {
    let context = EventQuery::for_event_types(["counter-incremented"]);
    for cycle in 0..APPENDS_PER_PROCESS {
        loop {
            let seen = store.query(&context).unwrap().current_context_version;
            let event = NewEvent::new(
                "counter-incremented",
                json!({"worker": worker, "cycle": cycle, "expected": seen}),
            );
            match store.append_if(vec![event], &context, seen) {
                Ok(_) => break,
                Err(EventStoreError::ConditionalAppendConflict { .. }) => {}
                Err(error) => panic!("append_if failed in worker {worker}: {error}"),
            }
        }
    }
}

/// Child: appends batches of 1, 2, ... `REPLAYED_BATCHES` events and says
/// `APPENDED <last sequence number>`.
fn append_batches(store: &impl EventStore, worker: usize) {
    let mut last = 0;
    for size in 1..=REPLAYED_BATCHES {
        let batch = (0..size)
            .map(|index| {
                NewEvent::new(
                    "from-child",
                    json!({"worker": worker, "size": size, "index": index}),
                )
            })
            .collect();
        last = store.append(batch).unwrap().last_sequence_number;
    }
    tell_parent(&format!("APPENDED {last}"));
}

/// Child: holds the durable stream `exclusive` until the parent says so.
fn hold_durable(store: &impl EventStore) {
    let deliveries = Deliveries::new();
    let stream = store
        .stream_all_durable(&DurableStream::new("exclusive"), deliveries.handler())
        .unwrap();
    assert_eq!(deliveries.sequence_numbers(), vec![1, 2, 3]);
    tell_parent("HOLDING");
    wait_for_parent();
    stream.unsubscribe();
    tell_parent("RELEASED");
}

/// Child (and parent): batches of 1 to 4 events of types `a` and `b`,
/// each event tagged with its batch, its index and the batch size.
fn append_tagged_batches(store: &impl EventStore, worker: usize) {
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

/// Child: many small batches of types `a` and `b`.
fn append_for_snapshots(store: &impl EventStore) {
    for round in 0..SNAPSHOT_BATCHES {
        let event_type = if round % 2 == 0 { "a" } else { "b" };
        store.append(numbered(event_type, 1 + round % 3)).unwrap();
    }
}

pub fn processes_appending_conditionally_to_one_context_win_each_version_once<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    // Nobody has opened the place yet: the children also race to set it up.
    let children: Vec<ChildProcess> = (0..CONTENDING_PROCESSES)
        .map(|worker| store.spawn_child("append-conditionally", &location, worker))
        .collect();
    for child in children {
        child.finish();
    }

    let instance = store.open(&location);
    let records = instance.query(&EventQuery::all()).unwrap().event_records;
    let total = (CONTENDING_PROCESSES * APPENDS_PER_PROCESS) as u64;
    assert_eq!(sequence_numbers(&records), (1..=total).collect::<Vec<_>>());
    let mut wins_per_worker = BTreeMap::new();
    for record in &records {
        // Every event was decided on the version just before it, so each
        // version was won exactly once.
        let expected = record.payload["expected"].as_u64().unwrap_or(0);
        assert_eq!(expected, record.sequence_number - 1, "{record:?}");
        *wins_per_worker
            .entry(record.payload["worker"].as_u64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        wins_per_worker.into_iter().collect::<Vec<_>>(),
        (0..CONTENDING_PROCESSES as u64)
            .map(|worker| (worker, APPENDS_PER_PROCESS))
            .collect::<Vec<_>>()
    );
}

pub fn a_durable_registration_replays_what_another_process_just_committed<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    // Open first, so that this instance last looked at the log before the
    // child appended.
    let instance = store.open(&location);
    instance.append(numbered("from-parent", 1)).unwrap();
    let mut child = store.spawn_child("append-batches", &location, 7);
    child.wait_for(&format!(
        "APPENDED {}",
        1 + REPLAYED_BATCHES * (REPLAYED_BATCHES + 1) / 2
    ));

    // At once: this instance may not have heard of the child's commits yet.
    let replayed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&DurableStream::new("replay"), replayed.handler())
        .unwrap();
    // Registration returned after the replay: the child's batches are in
    // it, whole and in order.
    let mut expected = vec![vec![1]];
    let mut next = 2;
    for size in 1..=REPLAYED_BATCHES as u64 {
        expected.push((next..next + size).collect());
        next += size;
    }
    assert_eq!(
        replayed
            .batches()
            .iter()
            .map(|batch| sequence_numbers(batch))
            .collect::<Vec<_>>(),
        expected
    );
    let from_child = replayed
        .batches()
        .concat()
        .iter()
        .filter(|record| record.event_type == "from-child")
        .count();
    assert_eq!(from_child, REPLAYED_BATCHES * (REPLAYED_BATCHES + 1) / 2);
    child.finish();
}

pub fn a_durable_name_active_in_another_process_is_refused_until_released<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let instance = store.open(&location);
    for _ in 0..3 {
        instance.append(numbered("a", 1)).unwrap();
    }
    let mut child = store.spawn_child("hold-durable", &location, 0);
    child.wait_for("HOLDING");

    let durable = DurableStream::new("exclusive");
    let refused = Deliveries::new();
    match instance.stream_all_durable(&durable, refused.handler()) {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(message.contains("exclusive"), "{message}");
            assert!(message.contains("already active"), "{message}");
        }
        other => panic!("expected BackendFailure, got {other:?}"),
    }
    assert!(refused.batches().is_empty());

    child.tell();
    child.wait_for("RELEASED");
    child.finish();
    instance.append(numbered("a", 1)).unwrap();
    let resumed = Deliveries::new();
    let _stream = instance
        .stream_all_durable(&durable, resumed.handler())
        .unwrap();
    // The other process handled 1..=3 and kept its cursor before it let go.
    assert_eq!(resumed.sequence_numbers(), vec![4]);
}

pub fn live_streams_receive_every_process_commits_in_order_as_committed_batches<
    L,
    S: EventStore,
>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let instance = store.open(&location);
    let all = Deliveries::new();
    let only_b = Deliveries::new();
    let _all = instance.stream_all(all.handler()).unwrap();
    let _only_b = instance
        .stream_to(&EventQuery::for_event_types(["b"]), only_b.handler())
        .unwrap();

    let children: Vec<ChildProcess> = (0..2)
        .map(|worker| store.spawn_child("append-tagged-batches", &location, worker))
        .collect();
    append_tagged_batches(&instance, 2);
    for child in children {
        child.finish();
    }

    let committed = instance.query(&EventQuery::all()).unwrap().event_records;
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

pub fn query_snapshots_stay_consistent_while_another_process_appends<L, S: EventStore>(
    store: &Persistent<'_, L, S>,
) {
    let location = store.new_location();
    let instance = store.open(&location);
    let mut child = store.spawn_child("append-for-snapshots", &location, 0);
    let mut rounds = 0_u64;
    while !child.has_exited() || rounds < 20 {
        let typed = instance
            .query(&EventQuery::for_event_types(["a"]).with_min_sequence_number(rounds % 40))
            .unwrap();
        assert!(
            typed.last_returned_sequence_number <= typed.current_context_version,
            "{typed:?}"
        );
        if let Some(last) = typed.last_returned_sequence_number {
            assert_eq!(typed.current_context_version, Some(last), "{typed:?}");
        }
        let all = instance.query(&EventQuery::all()).unwrap();
        let numbers = sequence_numbers(&all.event_records);
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
        assert_eq!(all.current_context_version, numbers.last().copied());
        rounds += 1;
    }
    child.finish();
    let final_count = instance
        .query(&EventQuery::all())
        .unwrap()
        .event_records
        .len();
    assert_eq!(
        final_count,
        (0..SNAPSHOT_BATCHES)
            .map(|round| 1 + round % 3)
            .sum::<usize>()
    );
}
