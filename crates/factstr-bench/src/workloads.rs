//! The workloads, each run on a fresh store and reported as one row.
//!
//! - `append`: batches of 1, 10, 100 and 1,000 events from 1 and 16 threads.
//! - `append_if`: read a small context, decide, append if unchanged; alone;
//!   1, 8 and 16 writers on disjoint contexts; 16 writers whose contexts
//!   overlap 10 % or 100 %.
//! - `query`: 10 matching events found by type and by payload predicate in
//!   logs of 10,000 / 100,000 / 1,000,000 events, and `append_if` on that
//!   payload context.
//! - `live`: commit to handler latency with 1 and 100 streams, and from
//!   another process where the store is shared (PostgreSQL).
//! - `replay`: durable replay of a stored log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use factstr::{DurableStream, EventFilter, EventQuery, EventStoreError, HandleStream, NewEvent};
use serde_json::json;

use crate::report::Measurement;
use crate::stats::Latencies;
use crate::stores::{self, Durability, SharedStore, StoreFactory};

/// The hidden sub-command a cross-process workload runs in its child.
pub(crate) const CHILD_APPEND_COMMAND: &str = "child-append";

pub(crate) struct Settings {
    quick: bool,
}

impl Settings {
    pub(crate) fn new(quick: bool) -> Self {
        Self { quick }
    }

    /// How long each throughput workload runs.
    pub(crate) fn run_time(&self) -> Duration {
        if self.quick {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        }
    }

    /// At most this many events per throughput workload (memory stays bounded).
    fn event_cap(&self) -> u64 {
        if self.quick { 200_000 } else { 2_000_000 }
    }

    fn log_sizes(&self) -> &'static [usize] {
        if self.quick {
            &[10_000]
        } else {
            &[10_000, 100_000, 1_000_000]
        }
    }

    fn query_repetitions(&self) -> usize {
        if self.quick { 40 } else { 300 }
    }

    fn live_appends(&self) -> usize {
        if self.quick { 40 } else { 400 }
    }

    fn replay_events(&self) -> usize {
        if self.quick { 20_000 } else { 500_000 }
    }
}

pub(crate) fn run_all(
    factory: &StoreFactory,
    settings: &Settings,
) -> Result<Vec<Measurement>, String> {
    let mut rows = Vec::new();
    for threads in [1, 16] {
        for batch_size in [1, 10, 100, 1_000] {
            rows.push(append(factory, settings, batch_size, threads)?);
        }
    }
    rows.push(append_if_alone(factory, settings)?);
    // 1 and 8 writers on disjoint contexts measure how the store scales with
    // writers; 16 writers with 0, 10 and 100 % overlap measure contention.
    for (writers, overlap_percent) in [(1, 0), (8, 0), (16, 0), (16, 10), (16, 100)] {
        rows.push(append_if_contended(
            factory,
            settings,
            writers,
            overlap_percent,
        )?);
    }
    for &size in settings.log_sizes() {
        rows.extend(query_on_log(factory, settings, size)?);
    }
    for streams in [1, 100] {
        rows.push(live_latency(factory, settings, streams)?);
    }
    if factory.kind() == crate::stores::StoreKind::Postgres {
        rows.push(live_latency_across_processes(factory, settings)?);
    }
    for batch_size in [10, 100] {
        rows.push(durable_replay(factory, settings, batch_size)?);
    }
    Ok(rows)
}

fn progress(factory: &StoreFactory, workload: &str, variant: &str) {
    eprintln!("[{}] {workload} {variant}", factory.kind());
}

fn failed(error: EventStoreError) -> String {
    error.to_string()
}

fn deposit(thread: usize, number: u64) -> NewEvent {
    NewEvent::new(
        "money-deposited",
        json!({"account": format!("acc-{thread}-{}", number % 1_000), "amount": number, "currency": "EUR"}),
    )
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1e6)
}

/// Runs `work` on `threads` threads until `deadline`; each call returns the
/// events it wrote. Returns (operations, events, seconds, latencies).
fn on_threads(
    threads: usize,
    deadline: Instant,
    event_cap: u64,
    work: impl Fn(usize, u64) -> Result<u64, String> + Sync,
) -> Result<(u64, u64, f64, Latencies), String> {
    let written = AtomicU64::new(0);
    let started = Instant::now();
    let outcomes: Vec<Result<(u64, Latencies), String>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (work, written) = (&work, &written);
                scope.spawn(move || {
                    let mut latencies = Latencies::default();
                    let mut operations = 0_u64;
                    while Instant::now() < deadline && written.load(Ordering::Relaxed) < event_cap {
                        let one = Instant::now();
                        let events = work(thread, operations)?;
                        latencies.record(one.elapsed());
                        written.fetch_add(events, Ordering::Relaxed);
                        operations += 1;
                    }
                    Ok((operations, latencies))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".to_owned()))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut operations = 0;
    let mut latencies = Latencies::default();
    for outcome in outcomes {
        let (count, samples) = outcome?;
        operations += count;
        latencies.merge(samples);
    }
    Ok((
        operations,
        written.load(Ordering::Relaxed),
        seconds,
        latencies,
    ))
}

fn append(
    factory: &StoreFactory,
    settings: &Settings,
    batch_size: usize,
    threads: usize,
) -> Result<Measurement, String> {
    let variant = format!("batch={batch_size} threads={threads}");
    progress(factory, "append", &variant);
    let store = factory.fresh(Durability::Full)?;
    let deadline = Instant::now() + settings.run_time();
    let (operations, events, seconds, latencies) =
        on_threads(threads, deadline, settings.event_cap(), |thread, round| {
            let batch = (0..batch_size as u64)
                .map(|offset| deposit(thread, round * batch_size as u64 + offset))
                .collect();
            store
                .append(batch)
                .map_err(failed)
                .map(|result| result.committed_count)
        })?;
    Ok(Measurement::new(
        &factory.kind().to_string(),
        "append",
        &variant,
        operations,
        events,
        seconds,
    )
    .with_latencies(&latencies))
}

/// The context of one counter: its increments.
fn counter_context(counter: &str) -> EventQuery {
    EventQuery::all().with_filters([EventFilter::for_event_types(["counter-incremented"])
        .with_payload_predicates([json!({"counter": counter})])])
}

fn increment(counter: &str) -> Vec<NewEvent> {
    vec![NewEvent::new(
        "counter-incremented",
        json!({"counter": counter}),
    )]
}

fn append_if_alone(factory: &StoreFactory, settings: &Settings) -> Result<Measurement, String> {
    progress(factory, "append_if", "uncontended");
    let store = factory.fresh(Durability::Full)?;
    let deadline = Instant::now() + settings.run_time();
    let decisions = Mutex::new(Latencies::default());
    let (operations, events, seconds, cycles) =
        on_threads(1, deadline, settings.event_cap(), |_, round| {
            // 1,000 counters in turn: each context stays small, as an entity's would.
            let counter = format!("c{}", round % 1_000);
            let context = counter_context(&counter);
            let seen = store
                .query(&context)
                .map_err(failed)?
                .current_context_version;
            let one = Instant::now();
            store
                .append_if(increment(&counter), &context, seen)
                .map_err(failed)?;
            decisions
                .lock()
                .map_err(|_| "poisoned")?
                .record(one.elapsed());
            Ok(1)
        })?;
    let decisions = decisions.into_inner().map_err(|_| "poisoned")?;
    let cycle_p50 = cycles.percentile_us(0.5).unwrap_or_default();
    Ok(Measurement::new(
        &factory.kind().to_string(),
        "append_if",
        "uncontended (1 writer)",
        operations,
        events,
        seconds,
    )
    .with_latencies(&decisions)
    .with_note(format!(
        "latency of append_if; query+append_if p50 {cycle_p50:.0} µs"
    )))
}

fn append_if_contended(
    factory: &StoreFactory,
    settings: &Settings,
    writers: usize,
    overlap_percent: u64,
) -> Result<Measurement, String> {
    let noun = if writers == 1 { "writer" } else { "writers" };
    let variant = format!("{writers} {noun}, {overlap_percent}% overlap");
    progress(factory, "append_if", &variant);
    let store = factory.fresh(Durability::Full)?;
    let deadline = Instant::now() + settings.run_time();
    let conflicts = AtomicU64::new(0);
    let (attempts, committed, seconds, latencies) =
        on_threads(writers, deadline, settings.event_cap(), |thread, round| {
            // A deterministic spread: `overlap_percent` of the decisions use the
            // shared counter, the others one of this writer's own 100 counters.
            let shared = (round * 37 + thread as u64 * 11) % 100 < overlap_percent;
            let counter = if shared {
                "shared".to_owned()
            } else {
                format!("w{thread}-c{}", round % 100)
            };
            let context = counter_context(&counter);
            let seen = store
                .query(&context)
                .map_err(failed)?
                .current_context_version;
            match store.append_if(increment(&counter), &context, seen) {
                Ok(_) => Ok(1),
                Err(EventStoreError::ConditionalAppendConflict { .. }) => {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    Ok(0)
                }
                Err(error) => Err(failed(error)),
            }
        })?;
    let conflicts = conflicts.into_inner();
    let rate = if attempts > 0 {
        100.0 * conflicts as f64 / attempts as f64
    } else {
        0.0
    };
    let mut row = Measurement::new(
        &factory.kind().to_string(),
        "append_if",
        &variant,
        attempts,
        committed,
        seconds,
    )
    .with_latencies(&latencies)
    .with_note(format!(
        "goodput in events/s; {rate:.1}% conflicts; latency of query+append_if"
    ));
    row.operations_per_second = if seconds > 0.0 {
        attempts as f64 / seconds
    } else {
        0.0
    };
    Ok(row)
}

/// Sizes of a log with `size` events of ten ordinary types and 10 needles.
fn build_log(store: &SharedStore, size: usize) -> Result<(), String> {
    let needle_every = size / 10;
    let mut batch = Vec::with_capacity(1_000);
    for index in 0..size {
        let event = if index % needle_every == needle_every / 2 {
            NewEvent::new(
                "needle-found",
                json!({"account": "needle-account", "amount": index}),
            )
        } else {
            NewEvent::new(
                format!("type-{}", index % 10),
                json!({"account": format!("acc-{}", index % 10_000), "amount": index}),
            )
        };
        batch.push(event);
        if batch.len() == 1_000 || index + 1 == size {
            store.append(std::mem::take(&mut batch)).map_err(failed)?;
        }
    }
    Ok(())
}

fn query_on_log(
    factory: &StoreFactory,
    settings: &Settings,
    size: usize,
) -> Result<Vec<Measurement>, String> {
    progress(
        factory,
        "query",
        &format!("building a log of {size} events"),
    );
    // Durability does not change reads; NORMAL keeps building the log fast and
    // is the setting the append_if figure below is specified for.
    let store = factory.fresh(Durability::Normal)?;
    build_log(&store, size)?;
    let kind = factory.kind().to_string();
    let by_type = EventQuery::for_event_types(["needle-found"]);
    let by_payload =
        EventQuery::all()
            .with_filters([EventFilter::default()
                .with_payload_predicates([json!({"account": "needle-account"})])]);
    let mut rows = Vec::new();
    for (variant, query) in [("by type", &by_type), ("by payload predicate", &by_payload)] {
        let variant = format!("{variant}, 10 of {size}");
        progress(factory, "query", &variant);
        let mut latencies = Latencies::default();
        let started = Instant::now();
        for _ in 0..settings.query_repetitions() {
            let one = Instant::now();
            let result = store.query(query).map_err(failed)?;
            latencies.record(one.elapsed());
            if result.event_records.len() != 10 {
                return Err(format!(
                    "{variant}: expected 10 matches, got {}",
                    result.event_records.len()
                ));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let operations = settings.query_repetitions() as u64;
        rows.push(
            Measurement::new(
                &kind,
                "query",
                &variant,
                operations,
                operations * 10,
                seconds,
            )
            .with_latencies(&latencies),
        );
    }

    let variant = format!("on the payload context of the {size} log");
    progress(factory, "query", &variant);
    let mut latencies = Latencies::default();
    let started = Instant::now();
    let repetitions = settings.query_repetitions() / 3;
    for number in 0..repetitions {
        let seen = store
            .query(&by_payload)
            .map_err(failed)?
            .current_context_version;
        let one = Instant::now();
        let event = NewEvent::new(
            "needle-found",
            json!({"account": "needle-account", "amount": number}),
        );
        store
            .append_if(vec![event], &by_payload, seen)
            .map_err(failed)?;
        latencies.record(one.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    rows.push(
        Measurement::new(
            &kind,
            "append_if",
            &variant,
            repetitions as u64,
            repetitions as u64,
            seconds,
        )
        .with_latencies(&latencies)
        .with_note(if kind == "sqlite" {
            "synchronous=NORMAL"
        } else {
            ""
        }),
    );
    Ok(rows)
}

/// A handler that records, per delivered event, now minus its `sent_us`.
fn latency_handler(samples: &Arc<Mutex<Latencies>>, delivered: &Arc<AtomicU64>) -> HandleStream {
    let (samples, delivered) = (Arc::clone(samples), Arc::clone(delivered));
    HandleStream::new(move |batch| {
        let now = now_us();
        if let Ok(mut samples) = samples.lock() {
            for record in &batch {
                samples.record_us(now - record.payload["sent_us"].as_f64().unwrap_or(now));
            }
        }
        delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
        async { Ok(()) }
    })
}

fn wait_for(delivered: &AtomicU64, expected: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expected} deliveries arrived within 60 s",
                delivered.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn timed_event(number: usize) -> NewEvent {
    NewEvent::new("pinged", json!({"sent_us": now_us(), "number": number}))
}

fn live_latency(
    factory: &StoreFactory,
    settings: &Settings,
    streams: usize,
) -> Result<Measurement, String> {
    let variant = format!("{streams} stream(s), same process");
    progress(factory, "live", &variant);
    let store = factory.fresh(Durability::Full)?;
    let samples = Arc::new(Mutex::new(Latencies::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let subscriptions = (0..streams)
        .map(|_| {
            store
                .stream_all(latency_handler(&samples, &delivered))
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let appends = settings.live_appends();
    let started = Instant::now();
    for number in 0..appends {
        store.append(vec![timed_event(number)]).map_err(failed)?;
        thread::sleep(Duration::from_millis(2));
    }
    wait_for(&delivered, (appends * streams) as u64)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(subscriptions);
    let samples = std::mem::take(&mut *samples.lock().map_err(|_| "poisoned")?);
    Ok(Measurement::new(
        &factory.kind().to_string(),
        "live",
        &variant,
        samples.len() as u64,
        samples.len() as u64,
        seconds,
    )
    .with_latencies(&samples)
    .with_note("append call -> handler, one append every 2 ms"))
}

fn live_latency_across_processes(
    factory: &StoreFactory,
    settings: &Settings,
) -> Result<Measurement, String> {
    let variant = "1 stream, appends from another process".to_owned();
    progress(factory, "live", &variant);
    let store = factory.fresh(Durability::Full)?;
    let child_arguments = factory
        .child_arguments()
        .ok_or("the store cannot be shared with a child process")?;
    let samples = Arc::new(Mutex::new(Latencies::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let subscription = store
        .stream_all(latency_handler(&samples, &delivered))
        .map_err(failed)?;
    let appends = settings.live_appends();
    let started = Instant::now();
    let executable = std::env::current_exe().map_err(|error| error.to_string())?;
    let status = std::process::Command::new(executable)
        .arg(CHILD_APPEND_COMMAND)
        .args(&child_arguments)
        .args(["--count", &appends.to_string()])
        .status()
        .map_err(|error| format!("cannot start the appending child: {error}"))?;
    if !status.success() {
        return Err(format!("the appending child failed: {status}"));
    }
    wait_for(&delivered, appends as u64)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(subscription);
    let samples = std::mem::take(&mut *samples.lock().map_err(|_| "poisoned")?);
    Ok(Measurement::new(
        &factory.kind().to_string(),
        "live",
        &variant,
        samples.len() as u64,
        samples.len() as u64,
        seconds,
    )
    .with_latencies(&samples)
    .with_note("append call in the child -> handler here"))
}

/// `factstr-bench child-append <store arguments> --count N`: appends N timed
/// events, one every 2 ms, for a parent measuring delivery latency.
pub(crate) fn run_child_appender(arguments: &[String]) -> Result<(), String> {
    let count_at = arguments
        .iter()
        .position(|argument| argument == "--count")
        .ok_or("--count is missing")?;
    let count: usize = arguments
        .get(count_at + 1)
        .and_then(|value| value.parse().ok())
        .ok_or("--count needs a number")?;
    let store = stores::open_for_child(&arguments[..count_at])?;
    for number in 0..count {
        store.append(vec![timed_event(number)]).map_err(failed)?;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn durable_replay(
    factory: &StoreFactory,
    settings: &Settings,
    batch_size: usize,
) -> Result<Measurement, String> {
    let total = settings.replay_events();
    let variant = format!("{total} events in batches of {batch_size}");
    progress(factory, "replay", &format!("building {variant}"));
    let store = factory.fresh(Durability::Normal)?;
    let batches = total / batch_size;
    let next_batch = AtomicU64::new(0);
    let failure = Mutex::new(None);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for thread in 0..4 {
            let (store, next_batch, failure, stop) = (&store, &next_batch, &failure, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed)
                    && next_batch.fetch_add(1, Ordering::Relaxed) < batches as u64
                {
                    let batch = (0..batch_size as u64)
                        .map(|offset| deposit(thread, offset))
                        .collect();
                    if let Err(error) = store.append(batch) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut failure) = failure.lock() {
                            *failure = Some(failed(error));
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().map_err(|_| "poisoned")? {
        return Err(error);
    }

    progress(factory, "replay", &variant);
    let handled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&handled);
    let started = Instant::now();
    let stream = store
        .stream_all_durable(
            &DurableStream::new("replay-benchmark"),
            HandleStream::new(move |batch| {
                counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                async { Ok(()) }
            }),
        )
        .map_err(failed)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(stream);
    let events = handled.load(Ordering::Relaxed);
    if events != (batches * batch_size) as u64 {
        return Err(format!(
            "replay delivered {events} events, expected {}",
            batches * batch_size
        ));
    }
    Ok(Measurement::new(
        &factory.kind().to_string(),
        "replay",
        &variant,
        batches as u64,
        events,
        seconds,
    )
    .with_note("ops = batches handed to the handler"))
}
