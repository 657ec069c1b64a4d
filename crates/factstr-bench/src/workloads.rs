//! The workloads, each run on a fresh store and reported as one row, next to
//! its reference row where it has one.
//!
//! - `append`: batches of 1, 10, 100 and 1,000 events from 1 and 16 threads
//!   (SQLite also batches of 1 and 100 from one thread with
//!   `synchronous=NORMAL`).
//! - `append_if`: read a small context, decide, append if unchanged; alone;
//!   1, 8 and 16 writers on disjoint contexts; 16 writers whose contexts
//!   overlap 10 % or 100 %.
//! - `query`: 10 matching events found by type and by payload predicate in
//!   logs of 10,000 / 100,000 / 1,000,000 events, and `append_if` on that
//!   payload context.
//! - `live`: commit to handler latency with 1 and 100 streams, and from
//!   another process where the store is shared (PostgreSQL).
//! - `replay`: durable replay of a stored log.
//!
//! The references, run in turns with the store's own row (see `paired`):
//! - memory: the published `factstr-memory` 0.5.2 on single-thread appends
//!   of 1, 100 and 1,000 events, the queries and `append_if` at 10,000 and
//!   100,000 events, live latency and replay;
//! - SQLite: bare SQLite on single-thread appends of 1 and 100 events (Full
//!   and Normal), and a paged read of its rows against replay;
//! - PostgreSQL: bare PostgreSQL on single-thread appends of 1 and 100
//!   events, a `SELECT 1` round trip against every query, and a paged read
//!   of its rows against replay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use factstr::{EventFilter, EventQuery, EventStoreError, NewEvent};
use serde_json::{Value, json};

use crate::api::{self, Api, Decision, Ours, Published052};
use crate::bare::{BareEvent, BarePostgres, BareSqlite, READ_PAGE_ROWS};
use crate::paired::{
    self, Metric, ReferenceKind, Tally, Timed, alternate, compared, take_turns, time_call,
};
use crate::report::Measurement;
use crate::stats::Latencies;
use crate::stores::{self, Durability, StoreFactory, StoreKind};

/// The hidden sub-command a cross-process workload runs in its child.
pub(crate) const CHILD_APPEND_COMMAND: &str = "child-append";

/// The largest log 0.5.2's memory store is measured on: its queries read the
/// whole log, so a log of 1,000,000 events would take minutes.
const COMPARED_LOG_SIZE: usize = 100_000;

/// The store name of 0.5.2's memory rows.
const PUBLISHED_052_MEMORY: &str = "memory-0.5.2";

pub(crate) struct Settings {
    quick: bool,
    side_by_side_only: bool,
    /// Run only the workloads of this name (`append`, `query`, `live`,
    /// `replay`; `query` includes `append_if` on the query logs).
    only: Option<String>,
}

impl Settings {
    pub(crate) fn new(quick: bool, side_by_side_only: bool, only: Option<String>) -> Self {
        Self {
            quick,
            side_by_side_only,
            only,
        }
    }

    /// Whether workloads named `workload` run (see `--only`).
    fn includes(&self, workload: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == workload)
    }

    /// How long each throughput workload runs (each side of a pair).
    pub(crate) fn run_time(&self) -> Duration {
        if self.quick {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        }
    }

    /// How long each side of a paired throughput workload runs: as long as
    /// an unpaired one; in the quick run half as long, so that a pair takes
    /// no longer than the single row did.
    fn pair_run_time(&self) -> Duration {
        if self.quick {
            self.run_time() / 2
        } else {
            self.run_time()
        }
    }

    /// In how many turns a pair shares its run time: slices of 250 ms (the
    /// quick run: 62.5 ms), short against the machine's drift.
    fn slices(&self) -> u32 {
        if self.quick { 2 } else { 8 }
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

    /// How often each log is replayed (in turns with its reference).
    fn replay_rounds(&self) -> u32 {
        if self.quick { 1 } else { 5 }
    }

    /// The rows of the bare engines' paged read (the replay reference).
    fn bare_read_rows(&self) -> u64 {
        if self.quick { 20_000 } else { 1_000_000 }
    }

    /// Whether a workload runs: every one normally; with `--side-by-side`
    /// only those that have a reference.
    fn runs(&self, has_reference: bool) -> bool {
        !self.side_by_side_only || has_reference
    }
}

pub(crate) fn run_all(
    factory: &StoreFactory,
    settings: &Settings,
) -> Result<Vec<Measurement>, String> {
    let kind = factory.kind();
    let mut rows = Vec::new();
    for batch_size in [1, 10, 100, 1_000] {
        if settings.includes("append") && settings.runs(append_has_reference(kind, batch_size)) {
            rows.extend(append_alone(
                factory,
                settings,
                batch_size,
                Durability::Full,
            )?);
        }
    }
    if kind == StoreKind::Sqlite && settings.includes("append") {
        for batch_size in [1, 100] {
            rows.extend(append_alone(
                factory,
                settings,
                batch_size,
                Durability::Normal,
            )?);
        }
    }
    if settings.includes("append") && settings.runs(false) {
        for batch_size in [1, 10, 100, 1_000] {
            rows.push(append(factory, settings, batch_size, 16)?);
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
    }
    for &size in settings.log_sizes() {
        if settings.includes("query")
            && settings.runs(kind != StoreKind::Sqlite && size <= COMPARED_LOG_SIZE)
        {
            rows.extend(query_on_log(factory, settings, size)?);
        }
    }
    for streams in [1, 100] {
        // PostgreSQL's single stream is the row the separate 0.5.2 program
        // (bench/factstr-052-postgres) is compared with.
        let compared = kind == StoreKind::Memory || (kind == StoreKind::Postgres && streams == 1);
        if settings.includes("live") && settings.runs(compared) {
            rows.extend(live_latency(factory, settings, streams)?);
        }
    }
    if kind == StoreKind::Postgres && settings.includes("live") && settings.runs(false) {
        rows.push(live_latency_across_processes(factory, settings)?);
    }
    let mut bare_log = None;
    for batch_size in [10, 100] {
        if !settings.includes("replay") {
            break;
        }
        rows.extend(durable_replay(
            factory,
            settings,
            batch_size,
            &mut bare_log,
        )?);
    }
    Ok(rows)
}

fn progress(factory: &StoreFactory, workload: &str, variant: &str) {
    eprintln!("[{}] {workload} {variant}", factory.kind());
}

fn failed(error: EventStoreError) -> String {
    error.to_string()
}

fn deposit_payload(thread: usize, number: u64) -> Value {
    json!({"account": format!("acc-{thread}-{}", number % 1_000), "amount": number, "currency": "EUR"})
}

fn deposit(thread: usize, number: u64) -> NewEvent {
    NewEvent::new("money-deposited", deposit_payload(thread, number))
}

/// The `round`-th batch of `batch_size` deposits of one writer.
fn deposits<A: Api>(round: u64, batch_size: usize) -> Vec<A::Event> {
    let first = round * batch_size as u64;
    (first..first + batch_size as u64)
        .map(|number| A::event("money-deposited", deposit_payload(0, number)))
        .collect()
}

/// `deposits` for the bare engines.
fn bare_deposits(round: u64, batch_size: usize) -> Vec<BareEvent> {
    let first = round * batch_size as u64;
    (first..first + batch_size as u64)
        .map(|number| BareEvent {
            event_type: "money-deposited",
            payload: deposit_payload(0, number),
        })
        .collect()
}

fn two(tallies: Vec<Tally>) -> Result<(Tally, Tally), String> {
    let mut tallies = tallies.into_iter();
    tallies
        .next()
        .zip(tallies.next())
        .ok_or_else(|| "a pair returned fewer than two tallies".to_owned())
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

/// Whether single-thread appends of `batch_size` events have a reference row.
fn append_has_reference(kind: StoreKind, batch_size: usize) -> bool {
    match kind {
        StoreKind::Memory => matches!(batch_size, 1 | 100 | 1_000),
        StoreKind::Sqlite | StoreKind::Postgres => matches!(batch_size, 1 | 100),
    }
}

/// Appends of `batch_size` events from one thread, in turns with the
/// reference where there is one. Rates are per second spent inside the
/// `append` calls; each batch is built before the clock starts.
fn append_alone(
    factory: &StoreFactory,
    settings: &Settings,
    batch_size: usize,
    durability: Durability,
) -> Result<Vec<Measurement>, String> {
    let kind = factory.kind();
    let mut variant = format!("batch={batch_size} threads=1");
    if durability == Durability::Normal {
        variant.push_str(" NORMAL");
    }
    progress(factory, "append", &variant);
    let store = factory.fresh(durability)?;
    let events = batch_size as u64;
    let mut ours = |round: u64| {
        let batch = deposits::<Ours>(round, batch_size);
        time_call(events, || Ours::append(&store, batch))
    };
    let (per_side, slices, cap) = (
        settings.pair_run_time(),
        settings.slices(),
        settings.event_cap(),
    );
    let name = kind.to_string();
    if !append_has_reference(kind, batch_size) {
        let tallies = alternate(&mut [&mut ours], settings.run_time(), slices, cap)?;
        let ours = tallies.first().ok_or("no tally")?;
        return Ok(vec![ours.measurement(&name, "append", &variant)]);
    }
    let (ours, theirs, reference_name, reference_variant, reference_kind) = match kind {
        StoreKind::Memory => {
            let published = api::open_published_052();
            let mut theirs = |round: u64| {
                let batch = deposits::<Published052>(round, batch_size);
                time_call(events, || Published052::append(&published, batch))
            };
            let (ours, theirs) = two(alternate(
                &mut [&mut ours, &mut theirs],
                per_side,
                slices,
                cap,
            )?)?;
            let reference = (PUBLISHED_052_MEMORY, variant.clone());
            (
                ours,
                theirs,
                reference.0,
                reference.1,
                ReferenceKind::Published052,
            )
        }
        StoreKind::Sqlite => {
            let mut bare = BareSqlite::create(factory.directory(), "bare-append", durability)?;
            let mut theirs = |round: u64| {
                let batch = bare_deposits(round, batch_size);
                time_call(events, || bare.commit(&batch))
            };
            let (ours, theirs) = two(alternate(
                &mut [&mut ours, &mut theirs],
                per_side,
                slices,
                cap,
            )?)?;
            let synchronous = match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            };
            let reference = format!("batch={batch_size}: 1 transaction, WAL, {synchronous}");
            (
                ours,
                theirs,
                "sqlite-bare",
                reference,
                ReferenceKind::BareEngine,
            )
        }
        StoreKind::Postgres => {
            let mut bare = factory.bare_postgres()?;
            let mut theirs = |round: u64| {
                let batch = bare_deposits(round, batch_size);
                time_call(events, || bare.commit(&batch))
            };
            let (ours, theirs) = two(alternate(
                &mut [&mut ours, &mut theirs],
                per_side,
                slices,
                cap,
            )?)?;
            let statement = if batch_size == 1 {
                "INSERT"
            } else {
                "multi-row INSERT"
            };
            let reference = format!("batch={batch_size}: one {statement} per commit");
            (
                ours,
                theirs,
                "postgres-bare",
                reference,
                ReferenceKind::BareEngine,
            )
        }
    };
    Ok(compared(
        ours.measurement(&name, "append", &variant),
        theirs.measurement(reference_name, "append", &reference_variant),
        reference_kind,
        Metric::EventsPerSecond,
    )
    .into())
}

/// A log of `size` events of ten ordinary types and 10 needles.
fn build_log<A: Api>(store: &A::Store, size: usize) -> Result<(), String> {
    let needle_every = size / 10;
    let mut batch = Vec::with_capacity(1_000);
    for index in 0..size {
        let event = if index % needle_every == needle_every / 2 {
            A::event(
                "needle-found",
                json!({"account": "needle-account", "amount": index}),
            )
        } else {
            A::event(
                &format!("type-{}", index % 10),
                json!({"account": format!("acc-{}", index % 10_000), "amount": index}),
            )
        };
        batch.push(event);
        if batch.len() == 1_000 || index + 1 == size {
            A::append(store, std::mem::take(&mut batch))?;
        }
    }
    Ok(())
}

fn needle_predicate() -> Value {
    json!({"account": "needle-account"})
}

/// One query that must find the 10 needles.
fn timed_query<A: Api>(store: &A::Store, query: &A::Query, variant: &str) -> Result<Timed, String> {
    let started = Instant::now();
    let queried = A::query(store, query)?;
    let elapsed = started.elapsed();
    if queried.matches != 10 {
        return Err(format!(
            "{variant}: expected 10 matches, got {}",
            queried.matches
        ));
    }
    Ok(Timed {
        events: 10,
        elapsed,
    })
}

/// Reads `context`, then times an `append_if` of one needle on it.
fn timed_append_if<A: Api>(
    store: &A::Store,
    context: &A::Query,
    number: usize,
) -> Result<Timed, String> {
    let seen = A::query(store, context)?.context_version;
    let event = A::event(
        "needle-found",
        json!({"account": "needle-account", "amount": number}),
    );
    time_call(1, || {
        match A::append_if(store, vec![event], context, seen)? {
            Decision::Committed => Ok(()),
            Decision::Conflict => Err("append_if met a conflict no one caused".to_owned()),
        }
    })
}

/// What the queries on a log are measured against.
enum QueryReference {
    None,
    Published052(<Published052 as Api>::Store),
    RoundTrip(BarePostgres),
}

fn query_on_log(
    factory: &StoreFactory,
    settings: &Settings,
    size: usize,
) -> Result<Vec<Measurement>, String> {
    let kind = factory.kind();
    progress(
        factory,
        "query",
        &format!("building a log of {size} events"),
    );
    // Durability does not change reads; NORMAL keeps building the log fast and
    // is the setting the append_if figure below is specified for.
    let store = factory.fresh(Durability::Normal)?;
    build_log::<Ours>(&store, size)?;
    let mut reference = match kind {
        StoreKind::Memory if size <= COMPARED_LOG_SIZE => {
            progress(
                factory,
                "query",
                &format!("building 0.5.2's log of {size} events"),
            );
            let published = api::open_published_052();
            build_log::<Published052>(&published, size)?;
            QueryReference::Published052(published)
        }
        StoreKind::Postgres => QueryReference::RoundTrip(factory.bare_postgres()?),
        _ => QueryReference::None,
    };
    let name = kind.to_string();
    let mut rows = Vec::new();
    let mut round_trips = Tally::default();
    for (variant, by_payload) in [("by type", false), ("by payload predicate", true)] {
        let variant = format!("{variant}, 10 of {size}");
        progress(factory, "query", &variant);
        let (our_query, their_query) = if by_payload {
            (
                Ours::payload_query(None, needle_predicate()),
                Published052::payload_query(None, needle_predicate()),
            )
        } else {
            (
                Ours::type_query("needle-found"),
                Published052::type_query("needle-found"),
            )
        };
        let (mut ours, mut theirs) = (Tally::default(), Tally::default());
        let (repetitions, turns) = (settings.query_repetitions(), settings.slices());
        let mut our_side = |_: usize| {
            ours.add(&timed_query::<Ours>(&store, &our_query, &variant)?);
            Ok(())
        };
        match &mut reference {
            QueryReference::Published052(published) => {
                let mut their_side = |_: usize| {
                    theirs.add(&timed_query::<Published052>(
                        published,
                        &their_query,
                        &variant,
                    )?);
                    Ok(())
                };
                take_turns(repetitions, turns, &mut [&mut our_side, &mut their_side])?;
            }
            QueryReference::RoundTrip(bare) => {
                let mut their_side = |_: usize| {
                    round_trips.add(&time_call(0, || bare.round_trip())?);
                    Ok(())
                };
                take_turns(repetitions, turns, &mut [&mut our_side, &mut their_side])?;
            }
            QueryReference::None => take_turns(repetitions, turns, &mut [&mut our_side])?,
        }
        let row = ours.measurement(&name, "query", &variant);
        if let QueryReference::Published052(_) = reference {
            rows.extend(compared(
                row,
                theirs.measurement(PUBLISHED_052_MEMORY, "query", &variant),
                ReferenceKind::Published052,
                Metric::P50Latency,
            ));
        } else {
            rows.push(row);
        }
    }
    if let QueryReference::RoundTrip(_) = reference {
        let round_trip = round_trips.measurement(
            "postgres-bare",
            "query",
            &format!("SELECT 1 round trip, next to the {size} log"),
        );
        for row in &mut rows {
            row.compared = paired::Comparison::of(
                row,
                &round_trip,
                ReferenceKind::BareEngine,
                Metric::P50Latency,
            );
        }
        rows.push(round_trip);
    }

    let variant = format!("on the payload context of the {size} log");
    progress(factory, "query", &variant);
    let our_context = Ours::payload_query(None, needle_predicate());
    let their_context = Published052::payload_query(None, needle_predicate());
    let (mut ours, mut theirs) = (Tally::default(), Tally::default());
    let (repetitions, turns) = (settings.query_repetitions() / 3, settings.slices());
    let mut our_side = |number: usize| {
        ours.add(&timed_append_if::<Ours>(&store, &our_context, number)?);
        Ok(())
    };
    if let QueryReference::Published052(published) = &reference {
        let mut their_side = |number: usize| {
            theirs.add(&timed_append_if::<Published052>(
                published,
                &their_context,
                number,
            )?);
            Ok(())
        };
        take_turns(repetitions, turns, &mut [&mut our_side, &mut their_side])?;
    } else {
        take_turns(repetitions, turns, &mut [&mut our_side])?;
    }
    let row =
        ours.measurement(&name, "append_if", &variant)
            .with_note(if kind == StoreKind::Sqlite {
                "synchronous=NORMAL"
            } else {
                ""
            });
    if let QueryReference::Published052(_) = reference {
        rows.extend(compared(
            row,
            theirs.measurement(PUBLISHED_052_MEMORY, "append_if", &variant),
            ReferenceKind::Published052,
            Metric::P50Latency,
        ));
    } else {
        rows.push(row);
    }
    Ok(rows)
}

/// Waits until `counter` reaches `expected`, looking every `poll`.
fn wait_for(counter: &AtomicU64, expected: u64, poll: Duration) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expected} deliveries arrived within 60 s",
                counter.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(poll);
    }
    Ok(())
}

fn timed_event(number: usize) -> NewEvent {
    NewEvent::new(
        "pinged",
        json!({"sent_us": api::now_us(), "number": number}),
    )
}

/// `streams` live streams on one store, fed one append every 2 ms.
struct Live<A: Api> {
    store: A::Store,
    samples: Arc<Mutex<Latencies>>,
    delivered: Arc<AtomicU64>,
    subscriptions: Vec<A::Stream>,
    sent: u64,
    seconds: f64,
}

impl<A: Api> Live<A> {
    fn subscribe(store: A::Store, streams: usize) -> Result<Self, String> {
        let samples = Arc::new(Mutex::new(Latencies::default()));
        let delivered = Arc::new(AtomicU64::new(0));
        let subscriptions = (0..streams)
            .map(|_| A::stream_latencies(&store, &samples, &delivered))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            store,
            samples,
            delivered,
            subscriptions,
            sent: 0,
            seconds: 0.0,
        })
    }

    /// Appends `appends` timed events and waits until every stream has them.
    fn send(&mut self, appends: usize) -> Result<(), String> {
        let started = Instant::now();
        for number in 0..appends {
            let event = A::event(
                "pinged",
                json!({"sent_us": api::now_us(), "number": number}),
            );
            A::append(&self.store, vec![event])?;
            thread::sleep(Duration::from_millis(2));
        }
        self.sent += appends as u64;
        wait_for(
            &self.delivered,
            self.sent * self.subscriptions.len() as u64,
            Duration::from_millis(2),
        )?;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn measurement(self, store: &str, variant: &str) -> Result<Measurement, String> {
        drop(self.subscriptions);
        let samples = std::mem::take(&mut *self.samples.lock().map_err(|_| "poisoned")?);
        Ok(Measurement::new(
            store,
            "live",
            variant,
            samples.len() as u64,
            samples.len() as u64,
            self.seconds,
        )
        .with_latencies(&samples)
        .with_note("append call -> handler, one append every 2 ms"))
    }
}

fn live_latency(
    factory: &StoreFactory,
    settings: &Settings,
    streams: usize,
) -> Result<Vec<Measurement>, String> {
    let kind = factory.kind();
    let variant = format!("{streams} stream(s), same process");
    progress(factory, "live", &variant);
    let mut ours = Live::<Ours>::subscribe(factory.fresh(Durability::Full)?, streams)?;
    let appends = settings.live_appends();
    if kind != StoreKind::Memory {
        ours.send(appends)?;
        return Ok(vec![ours.measurement(&kind.to_string(), &variant)?]);
    }
    let mut theirs = Live::<Published052>::subscribe(api::open_published_052(), streams)?;
    let turn = appends.div_ceil(settings.slices() as usize);
    let mut left = appends;
    while left > 0 {
        let now = turn.min(left);
        ours.send(now)?;
        theirs.send(now)?;
        left -= now;
    }
    Ok(compared(
        ours.measurement(&kind.to_string(), &variant)?,
        theirs.measurement(PUBLISHED_052_MEMORY, &variant)?,
        ReferenceKind::Published052,
        Metric::P50Latency,
    )
    .into())
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
    let subscription = Ours::stream_latencies(&store, &samples, &delivered)?;
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
    wait_for(&delivered, appends as u64, Duration::from_millis(2))?;
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

/// Stores `total` deposits in batches of `batch_size` from 4 threads.
fn fill_replay_log<A: Api>(
    store: &A::Store,
    total: usize,
    batch_size: usize,
) -> Result<(), String> {
    let batches = total / batch_size;
    let next_batch = AtomicU64::new(0);
    let failure = Mutex::new(None);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for thread in 0..4 {
            let (next_batch, failure, stop) = (&next_batch, &failure, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed)
                    && next_batch.fetch_add(1, Ordering::Relaxed) < batches as u64
                {
                    let batch = (0..batch_size as u64)
                        .map(|offset| A::event("money-deposited", deposit_payload(thread, offset)))
                        .collect();
                    if let Err(error) = A::append(store, batch) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut failure) = failure.lock() {
                            *failure = Some(error);
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().map_err(|_| "poisoned")? {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Registers a new durable stream from the beginning of the log and times
/// it until its handler has seen all `expected` events.
fn timed_replay<A: Api>(store: &A::Store, round: u32, expected: u64) -> Result<Timed, String> {
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stream = A::replay_counting(store, &format!("replay-benchmark-{round}"), &handled)?;
    // Our stores replay inside the call; a store that replays in the
    // background is waited for, in steps small against the replay.
    wait_for(&handled, expected, Duration::from_micros(100))?;
    let elapsed = started.elapsed();
    drop(stream);
    let events = handled.load(Ordering::Relaxed);
    if events != expected {
        return Err(format!(
            "replay delivered {events} events, expected {expected}"
        ));
    }
    Ok(Timed { events, elapsed })
}

/// The bare engine's table of deposits that the replay rows are compared
/// with, filled once per store kind.
enum BareLog {
    Sqlite(BareSqlite),
    Postgres(BarePostgres),
}

impl BareLog {
    fn fill(factory: &StoreFactory, rows: u64) -> Result<Self, String> {
        progress(
            factory,
            "replay",
            &format!("filling a bare table of {rows} rows"),
        );
        match factory.kind() {
            StoreKind::Sqlite => {
                let mut bare =
                    BareSqlite::create(factory.directory(), "bare-log", Durability::Normal)?;
                bare.fill(rows)?;
                Ok(Self::Sqlite(bare))
            }
            StoreKind::Postgres => {
                let mut bare = factory.bare_postgres()?;
                bare.fill_log(rows)?;
                Ok(Self::Postgres(bare))
            }
            StoreKind::Memory => Err("the memory store has no bare engine".to_owned()),
        }
    }

    fn timed_read(&mut self) -> Result<Timed, String> {
        let started = Instant::now();
        let events = match self {
            Self::Sqlite(bare) => bare.read_all()?,
            Self::Postgres(bare) => bare.read_all()?,
        };
        Ok(Timed {
            events,
            elapsed: started.elapsed(),
        })
    }
}

/// What a replay is measured against.
enum ReplayReference<'a> {
    Published052(<Published052 as Api>::Store),
    Bare(&'a mut BareLog),
}

fn durable_replay(
    factory: &StoreFactory,
    settings: &Settings,
    batch_size: usize,
    bare_log: &mut Option<BareLog>,
) -> Result<Vec<Measurement>, String> {
    let kind = factory.kind();
    let total = settings.replay_events();
    let variant = format!("{total} events in batches of {batch_size}");
    progress(factory, "replay", &format!("building {variant}"));
    let store = factory.fresh(Durability::Normal)?;
    fill_replay_log::<Ours>(&store, total, batch_size)?;
    let expected = (total / batch_size * batch_size) as u64;
    let mut reference = match kind {
        StoreKind::Memory => {
            progress(factory, "replay", &format!("building 0.5.2's {variant}"));
            let published = api::open_published_052();
            fill_replay_log::<Published052>(&published, total, batch_size)?;
            ReplayReference::Published052(published)
        }
        StoreKind::Sqlite | StoreKind::Postgres => {
            if bare_log.is_none() {
                *bare_log = Some(BareLog::fill(factory, settings.bare_read_rows())?);
            }
            ReplayReference::Bare(bare_log.as_mut().ok_or("no bare log")?)
        }
    };

    progress(factory, "replay", &variant);
    let (mut ours, mut theirs) = (Tally::default(), Tally::default());
    for round in 0..settings.replay_rounds() {
        ours.add(&timed_replay::<Ours>(&store, round, expected)?);
        match &mut reference {
            ReplayReference::Published052(published) => {
                theirs.add(&timed_replay::<Published052>(published, round, expected)?);
            }
            ReplayReference::Bare(bare) => theirs.add(&bare.timed_read()?),
        }
    }
    let batches = u64::from(settings.replay_rounds()) * expected / batch_size as u64;
    let row = Measurement::new(
        &kind.to_string(),
        "replay",
        &variant,
        batches,
        ours.events,
        ours.busy.as_secs_f64(),
    )
    .with_note("ops = batches handed to the handler");
    let (reference_row, reference_kind) = match reference {
        ReplayReference::Published052(_) => (
            Measurement::new(
                PUBLISHED_052_MEMORY,
                "replay",
                &variant,
                batches,
                theirs.events,
                theirs.busy.as_secs_f64(),
            )
            .with_note("ops = batches handed to the handler"),
            ReferenceKind::Published052,
        ),
        ReplayReference::Bare(_) => (
            Measurement::new(
                &format!("{kind}-bare"),
                "replay",
                &format!(
                    "read {} rows in pages of {READ_PAGE_ROWS}",
                    settings.bare_read_rows()
                ),
                theirs.calls,
                theirs.events,
                theirs.busy.as_secs_f64(),
            )
            .with_note("ops = whole reads; rows decoded, payload parsed"),
            ReferenceKind::BareEngine,
        ),
    };
    Ok(compared(row, reference_row, reference_kind, Metric::EventsPerSecond).into())
}
