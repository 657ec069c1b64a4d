//! Helpers shared by the cases: recording handlers and bounded waits.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use factstr::{EventQuery, EventRecord, EventStore, HandleStream, NewEvent};
use serde_json::{Value, json};

/// How long a case waits for a delivery before it fails. A liveness bound,
/// not a timing assertion: healthy stores deliver in milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A new event of `event_type` with `payload`.
pub fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent::new(event_type, payload)
}

/// `count` events of `event_type` with payloads `{"n": i}`.
pub fn numbered(event_type: &str, count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| event(event_type, json!({ "n": n })))
        .collect()
}

/// The sequence numbers of `records`.
pub fn sequence_numbers(records: &[EventRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|record| record.sequence_number)
        .collect()
}

/// The sequence numbers `query` returns from `store`.
pub fn queried_sequence_numbers(store: &impl EventStore, query: &EventQuery) -> Vec<u64> {
    sequence_numbers(&store.query(query).expect("query").event_records)
}

/// Records every batch a stream delivers.
#[derive(Default)]
pub struct Deliveries {
    batches: Mutex<Vec<Vec<EventRecord>>>,
    changed: Condvar,
}

impl Deliveries {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handler that records each batch and succeeds.
    pub fn handler(self: &Arc<Self>) -> HandleStream {
        let deliveries = Arc::clone(self);
        HandleStream::new(move |batch| {
            deliveries.record(batch);
            async { Ok(()) }
        })
    }

    /// Records `batch` (for handlers written by a case).
    pub fn record(&self, batch: Vec<EventRecord>) {
        self.batches.lock().unwrap().push(batch);
        self.changed.notify_all();
    }

    /// The batches recorded so far.
    pub fn batches(&self) -> Vec<Vec<EventRecord>> {
        self.batches.lock().unwrap().clone()
    }

    /// All recorded events' sequence numbers, in delivery order.
    pub fn sequence_numbers(&self) -> Vec<u64> {
        self.batches()
            .iter()
            .flat_map(|batch| sequence_numbers(batch))
            .collect()
    }

    /// Waits until at least `count` events were recorded; panics after
    /// [`PATIENCE`].
    pub fn wait_for_events(&self, count: usize) -> Vec<Vec<EventRecord>> {
        self.wait_until(|batches| batches.iter().map(Vec::len).sum::<usize>() >= count)
    }

    /// Waits until at least `count` batches were recorded.
    pub fn wait_for_batches(&self, count: usize) -> Vec<Vec<EventRecord>> {
        self.wait_until(|batches| batches.len() >= count)
    }

    /// Waits until a recorded event has sequence number `sequence_number`.
    pub fn wait_for_sequence(&self, sequence_number: u64) -> Vec<Vec<EventRecord>> {
        self.wait_until(|batches| {
            batches
                .iter()
                .flatten()
                .any(|record| record.sequence_number == sequence_number)
        })
    }

    fn wait_until(&self, done: impl Fn(&[Vec<EventRecord>]) -> bool) -> Vec<Vec<EventRecord>> {
        let deadline = Instant::now() + PATIENCE;
        let mut batches = self.batches.lock().unwrap();
        while !done(&batches) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "deliveries did not arrive within {PATIENCE:?}; got {:?}",
                batches
                    .iter()
                    .map(|batch| sequence_numbers(batch))
                    .collect::<Vec<_>>()
            );
            batches = self.changed.wait_timeout(batches, left).unwrap().0;
        }
        batches.clone()
    }
}

/// A gate a handler can wait at until the case opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Opens the gate for every waiter.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// Blocks the calling thread until the gate opens (or [`PATIENCE`] ends).
    pub fn wait(&self) {
        let deadline = Instant::now() + PATIENCE;
        let mut open = self.open.lock().unwrap();
        while !*open && Instant::now() < deadline {
            open = self
                .changed
                .wait_timeout(open, deadline.saturating_duration_since(Instant::now()))
                .unwrap()
                .0;
        }
    }
}

/// Waits until `condition` holds; panics after [`PATIENCE`] with `what`.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
