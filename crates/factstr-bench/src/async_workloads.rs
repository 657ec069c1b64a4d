//! The rows of the async API and of bounded reads (`factstr-bench async`):
//!
//! - **contention**: 100 tasks on a tokio runtime with 2 worker threads,
//!   each doing query + `append_if` on a context of its own, in a loop:
//!   through `AsyncEventStore`, and through the sync `EventStore` wrapped in
//!   `tokio::task::spawn_blocking` (what a service does without the async
//!   API), and through the sync `EventStore` called right in the task (which
//!   holds a runtime worker for the whole call). Pairs per second and the
//!   latency of one pair.
//! - **paging**: reading every event of a log of 1,000,000 through
//!   `query_pages` (sync iterator and async stream, 1,000 records a page)
//!   and through one `query`, each in a child process of its own, which
//!   reports its peak resident memory (`VmHWM` of `/proc/self/status`)
//!   before and after the read. Two log sizes show whether the peak
//!   depends on the log's size.
//!
//! ```text
//! cargo run --release -p factstr-bench -- async [--store memory|sqlite|postgres|all] [--only contention|paging] [--quick]
//! ```
//!
//! The table goes to stdout as Markdown; nothing is written elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factstr::{AsyncEventStore, EventFilter, EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_memory::MemoryStore;
use factstr_postgres::{PostgresStore, PostgresStoreOptions};
use factstr_sqlite::{SqliteDurability, SqliteStore, SqliteStoreOptions};
use futures::TryStreamExt;
use serde_json::json;

use crate::stats::Latencies;
use crate::stores::{Durability, Scratch, StoreFactory, StoreKind};

/// The subcommand that runs these rows.
pub(crate) const COMMAND: &str = "async";
/// The subcommand a paging child runs.
const PAGING_CHILD_COMMAND: &str = "async-paging-child";

const TASKS: usize = 100;
/// How the tasks reach the store.
const ROUTES: [&str; 3] = ["async", "spawn_blocking", "sync in the task"];
const WORKERS: usize = 2;
const PAGE_SIZE: usize = 1_000;
const APPEND_BATCH: usize = 1_000;

/// Runs `factstr-bench async ...` or a paging child; `None` for other commands.
pub(crate) fn run_command(arguments: &[String]) -> Option<Result<(), String>> {
    match arguments.first().map(String::as_str) {
        Some(COMMAND) => Some(run(&arguments[1..])),
        Some(PAGING_CHILD_COMMAND) => Some(run_paging_child(&arguments[1..])),
        _ => None,
    }
}

struct Options {
    stores: Vec<StoreKind>,
    quick: bool,
    contention: bool,
    paging: bool,
}

fn parse(arguments: &[String]) -> Result<Options, String> {
    let mut options = Options {
        stores: StoreKind::ALL.to_vec(),
        quick: false,
        contention: true,
        paging: true,
    };
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--quick" => options.quick = true,
            "--only" => match arguments.next().map(String::as_str) {
                Some("contention") => options.paging = false,
                Some("paging") => options.contention = false,
                other => return Err(format!("--only takes contention or paging, got {other:?}")),
            },
            "--store" => {
                let value = arguments.next().ok_or("--store needs a value")?;
                options.stores = match value.as_str() {
                    "all" => StoreKind::ALL.to_vec(),
                    name => vec![StoreKind::parse(name).ok_or(format!("unknown store `{name}`"))?],
                };
            }
            other => return Err(format!("unknown argument `{other}` for `{COMMAND}`")),
        }
    }
    Ok(options)
}

/// A store of one kind as its concrete type, so that both of its APIs can
/// be measured on the same instance.
#[derive(Clone)]
enum Opened {
    Memory(Arc<MemoryStore>),
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn sync_api(&self) -> Arc<dyn EventStore + Send + Sync> {
        match self {
            Self::Memory(store) => store.clone(),
            Self::Sqlite(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    fn async_api(&self) -> Arc<dyn AsyncEventStore> {
        match self {
            Self::Memory(store) => store.clone(),
            Self::Sqlite(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }
}

/// Opens a fresh store of `kind`: SQLite with its default (full) durability
/// in `folder`, PostgreSQL in a fresh schema of the factory's server.
fn fresh(
    kind: StoreKind,
    factory: &StoreFactory,
    folder: &Path,
    name: &str,
) -> Result<Opened, String> {
    match kind {
        StoreKind::Memory => Ok(Opened::Memory(Arc::new(MemoryStore::new()))),
        StoreKind::Sqlite => {
            let path = folder.join(format!("async-{name}.db"));
            let _ = std::fs::remove_file(&path);
            Ok(Opened::Sqlite(Arc::new(
                SqliteStore::open(&path).map_err(|error| error.to_string())?,
            )))
        }
        StoreKind::Postgres => {
            // The factory makes the schema; this store opens it again as
            // its concrete type.
            drop(factory.fresh(Durability::Full)?);
            let url = match factory.child_arguments().as_deref() {
                Some([_, url]) => url.clone(),
                _ => return Err("the PostgreSQL factory named no schema".to_owned()),
            };
            let store = PostgresStore::connect_with(
                &url,
                PostgresStoreOptions::default().max_connections(24),
            )
            .map_err(|error| error.to_string())?;
            Ok(Opened::Postgres(Arc::new(store)))
        }
    }
}

fn run(arguments: &[String]) -> Result<(), String> {
    let options = parse(arguments)?;
    let scratch = Scratch::new()?;
    if options.contention {
        let mut rows = Vec::new();
        for kind in &options.stores {
            let factory = StoreFactory::new(*kind, &scratch)?;
            rows.extend(contention_rows(
                *kind,
                &factory,
                scratch.path(),
                options.quick,
            )?);
        }
        println!("{}", contention_table(&rows));
    }
    if options.paging {
        let mut paging = Vec::new();
        for kind in &options.stores {
            let factory = StoreFactory::new(*kind, &scratch)?;
            paging.extend(paging_rows(*kind, &factory, &scratch, options.quick)?);
        }
        println!("{}", paging_table(&paging));
    }
    Ok(())
}

// ---- contention -------------------------------------------------------

struct ContentionRow {
    store: StoreKind,
    route: &'static str,
    pairs: usize,
    elapsed: Duration,
    latencies: Latencies,
}

/// The context of task `task`: its own account.
fn context_of(task: usize) -> EventQuery {
    EventQuery::all().with_filters([EventFilter::for_event_types(["money-withdrawn"])
        .with_payload_predicates([json!({ "account": format!("account-{task}") })])])
}

fn withdrawal(task: usize) -> NewEvent {
    NewEvent::new(
        "money-withdrawn",
        json!({ "account": format!("account-{task}"), "amount": 1 }),
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
}

fn contention_rows(
    kind: StoreKind,
    factory: &StoreFactory,
    folder: &Path,
    quick: bool,
) -> Result<Vec<ContentionRow>, String> {
    let pairs_per_task = match (kind, quick) {
        (_, true) => 5,
        (StoreKind::Memory, false) => 200,
        (_, false) => 20,
    };
    let mut rows = Vec::new();
    // Alternate the routes, twice each, so that neither gets a warmer disk
    // or server; the better run of each counts.
    for round in 0..2 {
        for route in ROUTES {
            eprintln!("[{kind}] contention, {route}, round {}", round + 1);
            let opened = fresh(
                kind,
                factory,
                folder,
                &format!("contention-{route}-{round}"),
            )?;
            let row = contention(kind, route, &opened, pairs_per_task)?;
            drop(opened);
            match rows
                .iter_mut()
                .find(|row: &&mut ContentionRow| row.route == route)
            {
                Some(best) if best.elapsed <= row.elapsed => {}
                Some(best) => *best = row,
                None => rows.push(row),
            }
        }
    }
    Ok(rows)
}

fn contention(
    kind: StoreKind,
    route: &'static str,
    opened: &Opened,
    pairs_per_task: usize,
) -> Result<ContentionRow, String> {
    let runtime = runtime()?;
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(TASKS);
        for task in 0..TASKS {
            let opened = opened.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Latencies::default();
                for _ in 0..pairs_per_task {
                    let pair_started = Instant::now();
                    match route {
                        "async" => async_pair(opened.async_api().as_ref(), task).await?,
                        "spawn_blocking" => blocking_pair(opened.sync_api(), task).await?,
                        _ => sync_pair(opened.sync_api().as_ref(), task)
                            .map_err(|error| error.to_string())?,
                    }
                    latencies.record(pair_started.elapsed());
                }
                Ok::<_, String>(latencies)
            }));
        }
        let mut all = Latencies::default();
        for task in tasks {
            all.merge(task.await.map_err(|error| error.to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed();
    // Closing waits for the store's threads: outside the measured time.
    drop(runtime);
    Ok(ContentionRow {
        store: kind,
        route,
        pairs: TASKS * pairs_per_task,
        elapsed,
        latencies,
    })
}

async fn async_pair(store: &dyn AsyncEventStore, task: usize) -> Result<(), String> {
    let context = context_of(task);
    let seen = store
        .query(&context)
        .await
        .map_err(|error| error.to_string())?;
    store
        .append_if(
            vec![withdrawal(task)],
            &context,
            seen.current_context_version,
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// The pair through the sync API right in the task: the runtime worker
/// running it waits for the store.
fn sync_pair(store: &(dyn EventStore + Send + Sync), task: usize) -> Result<(), EventStoreError> {
    let context = context_of(task);
    let seen = store.query(&context)?;
    store.append_if(
        vec![withdrawal(task)],
        &context,
        seen.current_context_version,
    )?;
    Ok(())
}

async fn blocking_pair(
    store: Arc<dyn EventStore + Send + Sync>,
    task: usize,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let context = context_of(task);
        let seen = store.query(&context)?;
        store.append_if(
            vec![withdrawal(task)],
            &context,
            seen.current_context_version,
        )?;
        Ok::<_, EventStoreError>(())
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| error.to_string())
}

fn contention_table(rows: &[ContentionRow]) -> String {
    let mut table = format!(
        "{TASKS} tasks, query + append_if on a context of their own, tokio runtime with {WORKERS} worker threads\n\n\
         | store | route | pairs | pairs/s | p50 ms | p99 ms | vs spawn_blocking |\n|---|---|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let rate = row.pairs as f64 / row.elapsed.as_secs_f64();
        let ratio = if row.route != "spawn_blocking" {
            rows.iter()
                .find(|other| other.store == row.store && other.route == "spawn_blocking")
                .map(|other| {
                    let other_rate = other.pairs as f64 / other.elapsed.as_secs_f64();
                    format!("{:.2}x", rate / other_rate)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        table.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
            row.store,
            row.route,
            row.pairs,
            rate,
            row.latencies.percentile_us(0.5).unwrap_or(0.0) / 1000.0,
            row.latencies.percentile_us(0.99).unwrap_or(0.0) / 1000.0,
            ratio,
        ));
    }
    table
}

// ---- paging -----------------------------------------------------------

struct PagingRow {
    store: StoreKind,
    events: u64,
    mode: String,
    peak_before_kib: u64,
    peak_after_kib: u64,
    elapsed: Duration,
}

const MODES: [&str; 3] = ["pages-sync", "pages-async", "query"];

fn paging_rows(
    kind: StoreKind,
    factory: &StoreFactory,
    scratch: &Scratch,
    quick: bool,
) -> Result<Vec<PagingRow>, String> {
    let sizes: &[u64] = if quick {
        &[20_000, 100_000]
    } else {
        &[100_000, 1_000_000]
    };
    let mut rows = Vec::new();
    for &events in sizes {
        // SQLite and PostgreSQL are filled once per size by this process;
        // a memory store lives in its child, which fills it first.
        let location = match kind {
            StoreKind::Memory => String::new(),
            StoreKind::Sqlite => {
                let path = scratch.path().join(format!("paging-{events}.db"));
                let _ = std::fs::remove_file(&path);
                let store = SqliteStore::open_with(
                    &path,
                    SqliteStoreOptions::default().durability(SqliteDurability::Normal),
                )
                .map_err(|error| error.to_string())?;
                eprintln!("[sqlite] paging: filling {events} events");
                fill(&store, events)?;
                path.display().to_string()
            }
            StoreKind::Postgres => {
                let store = factory.fresh(Durability::Full)?;
                eprintln!("[postgres] paging: filling {events} events");
                fill(store.as_ref(), events)?;
                match factory.child_arguments().as_deref() {
                    Some([_, url]) => url.clone(),
                    _ => return Err("the PostgreSQL factory named no schema".to_owned()),
                }
            }
        };
        for mode in MODES {
            eprintln!("[{kind}] paging {events} events: {mode}");
            rows.push(paging_child(kind, events, mode, &location)?);
        }
    }
    Ok(rows)
}

fn fill(store: &dyn EventStore, events: u64) -> Result<(), String> {
    let mut appended = 0;
    while appended < events {
        let batch = (events - appended).min(APPEND_BATCH as u64);
        let new_events = (0..batch)
            .map(|n| {
                NewEvent::new(
                    "money-deposited",
                    json!({ "account": format!("account-{}", (appended + n) % 1_000), "amount": 1, "note": "a payload of a realistic size, some sixty bytes" }),
                )
            })
            .collect();
        store
            .append(new_events)
            .map_err(|error| error.to_string())?;
        appended += batch;
    }
    Ok(())
}

fn paging_child(
    kind: StoreKind,
    events: u64,
    mode: &str,
    location: &str,
) -> Result<PagingRow, String> {
    let executable = std::env::current_exe().map_err(|error| error.to_string())?;
    let output = std::process::Command::new(executable)
        .args([
            PAGING_CHILD_COMMAND,
            &kind.to_string(),
            &events.to_string(),
            mode,
            location,
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot start the paging child: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "the paging child ({kind}, {mode}) failed: {}",
            output.status
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<u64> = text
        .split_whitespace()
        .map(|figure| {
            figure
                .parse::<u64>()
                .map_err(|error| format!("`{text}`: {error}"))
        })
        .collect::<Result<_, _>>()?;
    let [peak_before_kib, peak_after_kib, elapsed_us, read] = figures[..] else {
        return Err(format!("the paging child printed `{text}`"));
    };
    if read != events {
        return Err(format!("the paging child read {read} events of {events}"));
    }
    Ok(PagingRow {
        store: kind,
        events,
        mode: mode.to_owned(),
        peak_before_kib,
        peak_after_kib,
        elapsed: Duration::from_micros(elapsed_us),
    })
}

/// The child: opens (memory: fills) the store, then reads every event once
/// in `mode`, and prints its peak memory before and after the read, the
/// read's time and the number of events read.
fn run_paging_child(arguments: &[String]) -> Result<(), String> {
    let [kind, events, mode, location] = arguments else {
        return Err(format!(
            "{PAGING_CHILD_COMMAND} needs a store, a size, a mode and a location"
        ));
    };
    let kind = StoreKind::parse(kind).ok_or(format!("unknown store `{kind}`"))?;
    let events: u64 = events
        .parse()
        .map_err(|error| format!("size `{events}`: {error}"))?;
    let opened = match kind {
        StoreKind::Memory => {
            let store = Arc::new(MemoryStore::new());
            fill(store.as_ref(), events)?;
            Opened::Memory(store)
        }
        StoreKind::Sqlite => Opened::Sqlite(Arc::new(
            SqliteStore::open(PathBuf::from(location)).map_err(|error| error.to_string())?,
        )),
        StoreKind::Postgres => Opened::Postgres(Arc::new(
            PostgresStore::connect(location).map_err(|error| error.to_string())?,
        )),
    };
    let runtime = runtime()?;
    let query = EventQuery::for_event_types(["money-deposited"]);
    let peak_before = peak_memory_kib()?;
    let started = Instant::now();
    let read = match mode.as_str() {
        "pages-sync" => {
            let store = opened.sync_api();
            let mut read = 0u64;
            for page in factstr::QueryPages::new(store.as_ref(), &query, PAGE_SIZE) {
                read += page.map_err(|error| error.to_string())?.event_records.len() as u64;
            }
            read
        }
        "pages-async" => runtime.block_on(async {
            let store = opened.async_api();
            let mut pages = std::pin::pin!(factstr::query_pages(store.as_ref(), &query, PAGE_SIZE));
            let mut read = 0u64;
            while let Some(page) = pages.try_next().await.map_err(|error| error.to_string())? {
                read += page.event_records.len() as u64;
            }
            Ok::<_, String>(read)
        })?,
        "query" => {
            let result = opened
                .sync_api()
                .query(&query)
                .map_err(|error| error.to_string())?;
            result.event_records.len() as u64
        }
        other => return Err(format!("unknown paging mode `{other}`")),
    };
    let elapsed = started.elapsed();
    let peak_after = peak_memory_kib()?;
    println!("{peak_before} {peak_after} {} {read}", elapsed.as_micros());
    Ok(())
}

/// The process's peak resident memory so far (`VmHWM`), in KiB.
fn peak_memory_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cannot read /proc/self/status: {error}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".to_owned())
}

fn paging_table(rows: &[PagingRow]) -> String {
    let mut table = format!(
        "Reading every event once, {PAGE_SIZE} records a page or one `query`; peak resident memory (VmHWM) of the reading process\n\n\
         | store | events | read | time s | peak before read MiB | peak after read MiB | read added MiB |\n|---|---:|---|---:|---:|---:|---:|\n"
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} |\n",
            row.store,
            row.events,
            row.mode,
            row.elapsed.as_secs_f64(),
            row.peak_before_kib as f64 / 1024.0,
            row.peak_after_kib as f64 / 1024.0,
            row.peak_after_kib.saturating_sub(row.peak_before_kib) as f64 / 1024.0,
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_select_stores_and_parts() {
        let options = parse(&arguments("--store sqlite --only paging --quick")).unwrap();
        assert_eq!(options.stores, vec![StoreKind::Sqlite]);
        assert!(options.quick && options.paging && !options.contention);
        let options = parse(&arguments("--only contention")).unwrap();
        assert_eq!(options.stores, StoreKind::ALL.to_vec());
        assert!(options.contention && !options.paging);
        assert!(parse(&arguments("--only everything")).is_err());
        assert!(parse(&arguments("--store nowhere")).is_err());
    }

    #[test]
    fn the_peak_memory_grows_with_what_the_process_touched() {
        let before = peak_memory_kib().unwrap();
        assert!(before > 0);
        let touched = vec![1u8; 64 * 1024 * 1024];
        let after = peak_memory_kib().unwrap();
        assert!(touched.iter().all(|byte| *byte == 1));
        assert!(
            after >= before + 60 * 1024,
            "{before} KiB, then {after} KiB"
        );
    }

    #[test]
    fn a_memory_child_reads_every_event_in_each_mode() {
        for mode in MODES {
            let child = arguments(&format!("memory 2500 {mode} -"));
            run_paging_child(&child).unwrap();
        }
        assert!(run_paging_child(&arguments("memory 10 sideways -")).is_err());
    }

    #[test]
    fn the_async_route_and_the_sync_routes_make_the_same_appends() {
        let opened = Opened::Memory(Arc::new(MemoryStore::new()));
        for route in ROUTES {
            let row = contention(StoreKind::Memory, route, &opened, 3).unwrap();
            assert_eq!((row.pairs, row.latencies.len()), (TASKS * 3, TASKS * 3));
        }
        let all = opened.sync_api().query(&EventQuery::all()).unwrap();
        assert_eq!(all.event_records.len(), 3 * TASKS * 3);
        let per_account = opened.sync_api().query(&context_of(7)).unwrap();
        assert_eq!(per_account.event_records.len(), 3 * 3);
    }
}
