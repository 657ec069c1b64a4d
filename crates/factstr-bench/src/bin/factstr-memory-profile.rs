//! Small, repeatable runs of the memory store's hot paths, for profilers
//! (`valgrind --tool=callgrind`, `perf`) and for its memory use per event.
//!
//! ```text
//! cargo build --release -p factstr-bench --bin factstr-memory-profile
//! factstr-memory-profile append --batch 100 --events 100000
//! factstr-memory-profile append-if --events 10000 --calls 10000
//! factstr-memory-profile live --streams 100 --appends 500
//! factstr-memory-profile replay --batch 100 --events 500000
//! factstr-memory-profile bytes --events 100000
//! ```
//!
//! `bytes` counts every allocation with a counting global allocator: the
//! bytes the store holds per stored deposit event (the benchmark's event),
//! once appended and once its indexes are built by a query, next to the
//! event's JSON size and to what the published 0.5.2 store holds.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use factstr::{
    DurableStream, EventFilter, EventQuery, EventRecord, EventStore, HandleStream, NewEvent,
};
use factstr_memory::MemoryStore;
use serde_json::{Value, json};

/// Counts the bytes currently allocated through the global allocator.
struct Counting;

static ALLOCATED: AtomicI64 = AtomicI64::new(0);
static ALLOCATIONS: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn deposit_payload(number: u64) -> Value {
    json!({"account": format!("acc-0-{}", number % 1_000), "amount": number, "currency": "EUR"})
}

fn deposit(number: u64) -> NewEvent {
    NewEvent::new("money-deposited", deposit_payload(number))
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1e6)
}

fn option(arguments: &[String], name: &str, default: u64) -> u64 {
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|at| arguments.get(at + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn batches(events: u64, batch: u64) -> Vec<Vec<NewEvent>> {
    (0..events / batch)
        .map(|round| (round * batch..(round + 1) * batch).map(deposit).collect())
        .collect()
}

fn append(arguments: &[String]) {
    let batch = option(arguments, "--batch", 100);
    let events = option(arguments, "--events", 100_000);
    let store = MemoryStore::new();
    let prepared = batches(events, batch);
    let started = Instant::now();
    for batch in prepared {
        store.append(batch).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "append: {events} events in batches of {batch}: {:.0} ns an event",
        elapsed.as_nanos() as f64 / events as f64
    );
}

/// `append` on the published 0.5.2 store, for instruction counts side by side.
fn append_052(arguments: &[String]) {
    use factstr_052::EventStore as _;
    let batch = option(arguments, "--batch", 100);
    let events = option(arguments, "--events", 100_000);
    let store = factstr_memory_052::MemoryStore::new();
    let prepared: Vec<Vec<factstr_052::NewEvent>> = (0..events / batch)
        .map(|round| {
            (round * batch..(round + 1) * batch)
                .map(|number| {
                    factstr_052::NewEvent::new("money-deposited", deposit_payload(number))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in prepared {
        store.append(batch).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "0.5.2 append: {events} events in batches of {batch}: {:.0} ns an event",
        elapsed.as_nanos() as f64 / events as f64
    );
}

fn append_if(arguments: &[String]) {
    let events = option(arguments, "--events", 10_000);
    let calls = option(arguments, "--calls", 10_000);
    let store = MemoryStore::new();
    for batch in batches(events, 1_000) {
        store.append(batch).unwrap();
    }
    let context =
        EventQuery::all()
            .with_filters([EventFilter::default()
                .with_payload_predicates([json!({"account": "needle-account"})])]);
    // Each call's context version is the previous call's event, as a
    // command that just read its context would see it.
    let mut seen = store.query(&context).unwrap().current_context_version;
    let started = Instant::now();
    for number in 0..calls {
        let event = NewEvent::new(
            "needle-found",
            json!({"account": "needle-account", "amount": number}),
        );
        seen = Some(
            store
                .append_if(vec![event], &context, seen)
                .unwrap()
                .last_sequence_number,
        );
    }
    println!(
        "append_if: {:.0} ns a call",
        started.elapsed().as_nanos() as f64 / calls as f64
    );
}

fn live(arguments: &[String]) {
    let streams = option(arguments, "--streams", 100);
    let appends = option(arguments, "--appends", 500);
    let pause = Duration::from_micros(option(arguments, "--pause-us", 2_000));
    let store = MemoryStore::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    let subscriptions: Vec<_> = (0..streams)
        .map(|_| {
            let (latencies, delivered) = (Arc::clone(&latencies), Arc::clone(&delivered));
            store
                .stream_all(HandleStream::new(move |batch: Vec<EventRecord>| {
                    let now = now_us();
                    if let Ok(mut latencies) = latencies.lock() {
                        for record in &batch {
                            latencies.push(now - record.payload["sent_us"].as_f64().unwrap_or(now));
                        }
                    }
                    delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    async { Ok(()) }
                }))
                .unwrap()
        })
        .collect();
    for number in 0..appends {
        let event = NewEvent::new("pinged", json!({"sent_us": now_us(), "number": number}));
        store.append(vec![event]).unwrap();
        std::thread::sleep(pause);
    }
    while delivered.load(Ordering::Relaxed) < appends * streams {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(subscriptions);
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    let at = |share: f64| {
        latencies[((latencies.len() as f64 * share) as usize).min(latencies.len() - 1)]
    };
    println!(
        "live: {streams} streams, {appends} appends: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

/// One store's side of `live-pair`: what its handlers saw.
#[derive(Default)]
struct LiveSide {
    latencies: Mutex<Vec<f64>>,
    delivered: AtomicU64,
}

impl LiveSide {
    fn record(&self, sent: impl Iterator<Item = f64>) {
        let now = now_us();
        let mut latencies = self.latencies.lock().unwrap();
        let before = latencies.len();
        latencies.extend(sent.map(|sent| now - sent));
        let count = (latencies.len() - before) as u64;
        drop(latencies);
        self.delivered.fetch_add(count, Ordering::Relaxed);
    }

    fn wait_for(&self, expected: u64) {
        while self.delivered.load(Ordering::Relaxed) < expected {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn percentiles(&self) -> [f64; 3] {
        let mut latencies = self.latencies.lock().unwrap().clone();
        latencies.sort_by(f64::total_cmp);
        let at = |share: f64| latencies[(latencies.len() as f64 * share) as usize];
        [at(0.1), at(0.5), at(0.9)]
    }
}

/// Live latency of ours and 0.5.2 in turns of 50 appends (one every 2 ms),
/// as the benchmark runs it, for `--rounds` turns each.
fn live_pair(arguments: &[String]) {
    use factstr_052::EventStore as _;
    let streams = option(arguments, "--streams", 1);
    let rounds = option(arguments, "--rounds", 20);
    let ours = MemoryStore::new();
    let theirs = factstr_memory_052::MemoryStore::new();
    let (our_side, their_side) = (Arc::new(LiveSide::default()), Arc::new(LiveSide::default()));
    let _ours: Vec<_> = (0..streams)
        .map(|_| {
            let side = Arc::clone(&our_side);
            ours.stream_all(HandleStream::new(move |batch: Vec<EventRecord>| {
                side.record(
                    batch
                        .iter()
                        .map(|record| record.payload["sent_us"].as_f64().unwrap_or(0.0)),
                );
                async { Ok(()) }
            }))
            .unwrap()
        })
        .collect();
    let _theirs: Vec<_> = (0..streams)
        .map(|_| {
            let side = Arc::clone(&their_side);
            theirs
                .stream_all(factstr_052::HandleStream::new(
                    move |batch: Vec<factstr_052::EventRecord>| {
                        side.record(
                            batch
                                .iter()
                                .map(|record| record.payload["sent_us"].as_f64().unwrap_or(0.0)),
                        );
                        async { Ok(()) }
                    },
                ))
                .unwrap()
        })
        .collect();
    // One append to each store in turn, 1 ms apart: both see the same
    // minutes of the machine.
    for round in 1..=rounds * 50 {
        let event = NewEvent::new("pinged", json!({"sent_us": now_us(), "number": round}));
        ours.append(vec![event]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        let event =
            factstr_052::NewEvent::new("pinged", json!({"sent_us": now_us(), "number": round}));
        theirs.append(vec![event]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        our_side.wait_for(round * streams);
        their_side.wait_for(round * streams);
    }
    let ([ours_p10, ours_p50, ours_p90], [theirs_p10, theirs_p50, theirs_p90]) =
        (our_side.percentiles(), their_side.percentiles());
    println!(
        "live pair, {streams} streams, {} appends each: ours p10/p50/p90 {ours_p10:.1}/{ours_p50:.1}/{ours_p90:.1} µs, \
         0.5.2 {theirs_p10:.1}/{theirs_p50:.1}/{theirs_p90:.1} µs, p50 ratio {:.2}x",
        rounds * 50,
        theirs_p50 / ours_p50
    );
}

fn replay(arguments: &[String]) {
    let batch = option(arguments, "--batch", 100);
    let events = option(arguments, "--events", 500_000);
    let rounds = option(arguments, "--rounds", 3);
    let store = MemoryStore::new();
    for prepared in batches(events, batch) {
        store.append(prepared).unwrap();
    }
    for round in 0..rounds {
        let handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&handled);
        let started = Instant::now();
        let stream = store
            .stream_all_durable(
                &DurableStream::new(format!("replay-{round}")),
                HandleStream::new(move |batch: Vec<EventRecord>| {
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    async { Ok(()) }
                }),
            )
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(handled.load(Ordering::Relaxed), events);
        drop(stream);
        println!(
            "replay: {events} events in batches of {batch}: {:.0} events/s",
            events as f64 / elapsed.as_secs_f64()
        );
    }
}

fn bytes(arguments: &[String]) {
    let events = option(arguments, "--events", 100_000);
    let sample = deposit(123);
    let payload_json = serde_json::to_string(&sample.payload).unwrap().len();
    let event_json = serde_json::to_string(&sample).unwrap().len();
    // Counted from before the events are built: what the store keeps of
    // them (payloads included) is what it holds; the rest was freed.
    let before_store = ALLOCATED.load(Ordering::Relaxed);
    let before_allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let prepared = batches(events, 1);
    let store = MemoryStore::new();
    for batch in prepared {
        store.append(batch).unwrap();
    }
    let appended = ALLOCATED.load(Ordering::Relaxed) - before_store;
    let appended_allocations = ALLOCATIONS.load(Ordering::Relaxed) - before_allocations;
    let by_type = store
        .query(&EventQuery::for_event_types(["money-deposited"]).with_min_sequence_number(events))
        .unwrap();
    assert!(by_type.event_records.is_empty());
    let by_payload = store
        .query(&EventQuery::all().with_filters([
            EventFilter::default().with_payload_predicates([json!({"account": "acc-0-7"})]),
        ]))
        .unwrap();
    assert_eq!(by_payload.event_records.len() as u64, events / 1_000);
    drop(by_payload);
    let indexed = ALLOCATED.load(Ordering::Relaxed) - before_store;
    let indexed_allocations = ALLOCATIONS.load(Ordering::Relaxed) - before_allocations;
    let per_event = |total: i64| total as f64 / events as f64;
    println!(
        "{events} deposit events, e.g. {}",
        serde_json::to_string(&sample).unwrap()
    );
    println!("JSON: payload {payload_json} bytes, whole event {event_json} bytes");
    println!(
        "appended: {:.1} bytes an event ({:.2}x the payload JSON), {:.2} allocations an event",
        per_event(appended),
        per_event(appended) / payload_json as f64,
        per_event(appended_allocations)
    );
    println!(
        "indexed:  {:.1} bytes an event ({:.2}x the payload JSON), {:.2} allocations an event",
        per_event(indexed),
        per_event(indexed) / payload_json as f64,
        per_event(indexed_allocations)
    );
    drop(store);
    // The published 0.5.2 store holding the same events, for comparison.
    let before_published = ALLOCATED.load(Ordering::Relaxed);
    let published = {
        use factstr_052::EventStore as _;
        let store = factstr_memory_052::MemoryStore::new();
        for number in 0..events {
            store
                .append(vec![factstr_052::NewEvent::new(
                    "money-deposited",
                    deposit_payload(number),
                )])
                .unwrap();
        }
        let held = ALLOCATED.load(Ordering::Relaxed) - before_published;
        drop(store);
        held
    };
    println!(
        "0.5.2:    {:.1} bytes an event ({:.2}x the payload JSON)",
        per_event(published),
        per_event(published) / payload_json as f64
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.first().map(String::as_str) {
        Some("append") => append(&arguments),
        Some("append-052") => append_052(&arguments),
        Some("append-if") => append_if(&arguments),
        Some("live") => live(&arguments),
        Some("live-pair") => live_pair(&arguments),
        Some("replay") => replay(&arguments),
        Some("bytes") => bytes(&arguments),
        _ => {
            eprintln!("usage: factstr-memory-profile append|append-if|live|replay|bytes [options]")
        }
    }
}
