//! The published `factstr-postgres` 0.5.2 on the PostgreSQL workloads of
//! `factstr-bench`, measured the same way, so that its rows can be read next
//! to ours (`--compare` prints the ratios against a `factstr-bench` JSON
//! file of the same minutes).
//!
//! ```text
//! cargo run --release -- --database-url URL [--quick] [--compare FILE]
//! ```
//!
//! Each workload runs on a fresh database created by 0.5.2's own
//! `PostgresStore::bootstrap` (`factstr052_<pid>_<n>`; they are left on the
//! server, which is meant to be a throwaway one).

// A command-line program: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use factstr_052::{DurableStream, EventRecord, EventStore, HandleStream, NewEvent};
use factstr_postgres_052::{PostgresBootstrapOptions, PostgresStore};
use serde_json::{Value, json};

const USAGE: &str =
    "usage: factstr-052-postgres-bench --database-url URL [--quick] [--compare FILE]

  --database-url  a PostgreSQL server (the database part of the URL is ignored:
                  every workload bootstraps a fresh database on that server)
                  (default: $DATABASE_URL)
  --quick         small sizes and short runs
  --compare       a factstr-bench JSON file (--store postgres --side-by-side)
                  of the same minutes: prints ours / 0.5.2 per workload";

fn main() -> ExitCode {
    match Options::parse(std::env::args().skip(1).collect()) {
        Ok(Some(options)) => match run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    server_url: String,
    quick: bool,
    compare: Option<PathBuf>,
}

impl Options {
    fn parse(arguments: Vec<String>) -> Result<Option<Self>, String> {
        let mut url = std::env::var("DATABASE_URL").ok();
        let (mut quick, mut compare) = (false, None);
        let mut arguments = arguments.into_iter();
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--database-url" => {
                    url = Some(arguments.next().ok_or("--database-url needs a value")?)
                }
                "--quick" => quick = true,
                "--compare" => {
                    compare = Some(PathBuf::from(
                        arguments.next().ok_or("--compare needs a value")?,
                    ));
                }
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        let url = url.ok_or("no --database-url and no DATABASE_URL")?;
        Ok(Some(Self {
            server_url: server_part(&url),
            quick,
            compare,
        }))
    }
}

/// `postgres://user@host:port/database?options` without the database and
/// the options.
fn server_part(url: &str) -> String {
    let without_options = url.split('?').next().unwrap_or(url);
    match without_options.find("://") {
        Some(scheme_end) => match without_options[scheme_end + 3..].find('/') {
            Some(path_start) => without_options[..scheme_end + 3 + path_start].to_owned(),
            None => without_options.to_owned(),
        },
        None => without_options.to_owned(),
    }
}

/// The sizes of `factstr-bench` (full or `--quick`).
struct Settings {
    quick: bool,
}

impl Settings {
    fn run_time(&self) -> Duration {
        // factstr-bench gives each side of a pair half its run time in --quick.
        if self.quick {
            Duration::from_millis(125)
        } else {
            Duration::from_secs(2)
        }
    }

    fn live_appends(&self) -> usize {
        if self.quick { 40 } else { 400 }
    }

    fn replay_events(&self) -> usize {
        if self.quick { 20_000 } else { 500_000 }
    }

    /// One replay: 0.5.2 replays about 30 times slower than ours, so a
    /// round of 500,000 events already takes a minute.
    fn replay_rounds(&self) -> u32 {
        1
    }
}

struct Row {
    workload: &'static str,
    variant: String,
    events_per_second: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

#[derive(Default)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn record_us(&mut self, microseconds: f64) {
        self.0.push(microseconds.max(0.0));
    }

    /// Nearest rank, as factstr-bench computes it.
    fn percentile_us(&self, quantile: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1e6)
}

fn failed(error: impl std::fmt::Display) -> String {
    error.to_string()
}

struct Stores {
    server_url: String,
    opened: u32,
}

impl Stores {
    fn fresh(&mut self) -> Result<PostgresStore, String> {
        self.opened += 1;
        PostgresStore::bootstrap(PostgresBootstrapOptions {
            server_url: self.server_url.clone(),
            database_name: format!("factstr052_{}_{}", std::process::id(), self.opened),
        })
        .map_err(failed)
    }
}

fn deposit(thread: usize, number: u64) -> NewEvent {
    NewEvent::new(
        "money-deposited",
        json!({"account": format!("acc-{thread}-{}", number % 1_000), "amount": number, "currency": "EUR"}),
    )
}

/// One thread appending batches of `batch_size` for the run time; rates per
/// second spent inside `append`, each batch built before the clock starts.
fn append_alone(
    stores: &mut Stores,
    settings: &Settings,
    batch_size: usize,
) -> Result<Row, String> {
    let variant = format!("batch={batch_size} threads=1");
    eprintln!("[postgres-0.5.2] append {variant}");
    let store = stores.fresh()?;
    let mut latencies = Latencies::default();
    let (mut events, mut busy) = (0_u64, Duration::ZERO);
    let deadline = Instant::now() + settings.run_time();
    let mut round = 0_u64;
    while Instant::now() < deadline {
        let first = round * batch_size as u64;
        let batch = (first..first + batch_size as u64)
            .map(|number| deposit(0, number))
            .collect();
        let started = Instant::now();
        store.append(batch).map_err(failed)?;
        let elapsed = started.elapsed();
        busy += elapsed;
        latencies.record_us(elapsed.as_secs_f64() * 1e6);
        events += batch_size as u64;
        round += 1;
    }
    Ok(Row {
        workload: "append",
        variant,
        events_per_second: events as f64 / busy.as_secs_f64(),
        p50_us: latencies.percentile_us(0.5),
        p99_us: latencies.percentile_us(0.99),
    })
}

fn wait_for(counter: &AtomicU64, expected: u64, poll: Duration) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expected} events arrived",
                counter.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(poll);
    }
    Ok(())
}

/// One `stream_all` handler; one append every 2 ms; latency from before the
/// `append` call to the handler.
fn live_latency(stores: &mut Stores, settings: &Settings) -> Result<Row, String> {
    let variant = "1 stream(s), same process".to_owned();
    eprintln!("[postgres-0.5.2] live {variant}");
    let store = stores.fresh()?;
    let samples = Arc::new(Mutex::new(Latencies::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let handler = {
        let (samples, delivered) = (Arc::clone(&samples), Arc::clone(&delivered));
        HandleStream::new(move |batch: Vec<EventRecord>| {
            let now = now_us();
            if let Ok(mut samples) = samples.lock() {
                for record in &batch {
                    samples.record_us(now - record.payload["sent_us"].as_f64().unwrap_or(now));
                }
            }
            delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
            async { Ok(()) }
        })
    };
    let stream = store.stream_all(handler).map_err(failed)?;
    let started = Instant::now();
    let appends = settings.live_appends();
    for number in 0..appends {
        let event = NewEvent::new("pinged", json!({"sent_us": now_us(), "number": number}));
        store.append(vec![event]).map_err(failed)?;
        thread::sleep(Duration::from_millis(2));
    }
    wait_for(&delivered, appends as u64, Duration::from_millis(2))?;
    let seconds = started.elapsed().as_secs_f64();
    drop(stream);
    let samples = std::mem::take(&mut *samples.lock().map_err(|_| "poisoned")?);
    Ok(Row {
        workload: "live",
        variant,
        events_per_second: samples.0.len() as f64 / seconds,
        p50_us: samples.percentile_us(0.5),
        p99_us: samples.percentile_us(0.99),
    })
}

/// Stores the events in batches from 4 threads, then times durable streams
/// from the beginning until their handler has seen every event.
fn durable_replay(
    stores: &mut Stores,
    settings: &Settings,
    batch_size: usize,
) -> Result<Row, String> {
    let total = settings.replay_events();
    let variant = format!("{total} events in batches of {batch_size}");
    eprintln!("[postgres-0.5.2] replay building {variant}");
    let store = stores.fresh()?;
    let batches = (total / batch_size) as u64;
    let next_batch = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure = Mutex::new(None);
    thread::scope(|scope| {
        for thread in 0..4 {
            let (store, next_batch, stop, failure) = (&store, &next_batch, &stop, &failure);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed)
                    && next_batch.fetch_add(1, Ordering::Relaxed) < batches
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
    eprintln!("[postgres-0.5.2] replay {variant}");
    let expected = batches * batch_size as u64;
    let mut busy = Duration::ZERO;
    for round in 0..settings.replay_rounds() {
        let handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&handled);
        let started = Instant::now();
        let stream = store
            .stream_all_durable(
                &DurableStream::new(format!("replay-benchmark-{round}")),
                HandleStream::new(move |batch: Vec<EventRecord>| {
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    async { Ok(()) }
                }),
            )
            .map_err(failed)?;
        wait_for(&handled, expected, Duration::from_micros(100))?;
        busy += started.elapsed();
        drop(stream);
    }
    Ok(Row {
        workload: "replay",
        variant,
        events_per_second: (expected * u64::from(settings.replay_rounds())) as f64
            / busy.as_secs_f64(),
        p50_us: None,
        p99_us: None,
    })
}

/// The disk's fsync rate as factstr-bench measures it (an 8 KiB overwrite
/// and `fdatasync` in a loop, in the system temporary folder). On a shared
/// machine it moves from minute to minute and every durable commit waits for
/// it, so each run prints it next to its rows (and next to the bench's).
fn fsync_probe(duration: Duration) -> Result<Row, String> {
    use std::io::{Seek, SeekFrom, Write};
    let path = std::env::temp_dir().join(format!("factstr-052-fsync-probe-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    let block = vec![0x5a_u8; 8192];
    file.write_all(&block)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    let mut latencies = Latencies::default();
    let started = Instant::now();
    while started.elapsed() < duration || latencies.0.len() < 20 {
        let one = Instant::now();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&block))
            .and_then(|()| file.sync_data())
            .map_err(failed)?;
        latencies.record_us(one.elapsed().as_secs_f64() * 1e6);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Row {
        workload: "fsync",
        variant: "8 KiB overwrite + fdatasync".to_owned(),
        events_per_second: latencies.0.len() as f64 / seconds,
        p50_us: latencies.percentile_us(0.5),
        p99_us: latencies.percentile_us(0.99),
    })
}

fn run(options: &Options) -> Result<(), String> {
    let settings = Settings {
        quick: options.quick,
    };
    let mut stores = Stores {
        server_url: options.server_url.clone(),
        opened: 0,
    };
    let rows = vec![
        fsync_probe(settings.run_time())?,
        append_alone(&mut stores, &settings, 1)?,
        append_alone(&mut stores, &settings, 100)?,
        live_latency(&mut stores, &settings)?,
        durable_replay(&mut stores, &settings, 100)?,
    ];
    let ours = match &options.compare {
        Some(path) => Some(read_ours(path)?),
        None => None,
    };
    println!(
        "\nfactstr-postgres 0.5.2{}; ratio > 1: ours is faster (events/s: ours / 0.5.2, p50: 0.5.2 / ours)\n",
        if options.quick { " (--quick)" } else { "" }
    );
    println!(
        "{:<16} {:<8} {:<34} {:>12} {:>9} {:>9} {:>12} {:>9} {:>7} {:>7}",
        "store",
        "workload",
        "variant",
        "events/s",
        "p50 µs",
        "p99 µs",
        "ours ev/s",
        "ours p50",
        "ev/s",
        "p50"
    );
    println!("{}", "-".repeat(132));
    for row in &rows {
        let matching = ours.as_ref().and_then(|ours| {
            ours.iter().find(|candidate| {
                candidate.workload == row.workload && candidate.variant == row.variant
            })
        });
        // The probe is shown for both runs, not compared.
        let compared = matching.filter(|_| row.workload != "fsync");
        let rate_ratio = compared.map(|ours| ours.events_per_second / row.events_per_second);
        let p50_ratio = compared.and_then(|ours| Some(row.p50_us? / ours.p50_us?));
        println!(
            "{:<16} {:<8} {:<34} {:>12.0} {:>9} {:>9} {:>12} {:>9} {:>7} {:>7}",
            if row.workload == "fsync" {
                "disk"
            } else {
                "postgres-0.5.2"
            },
            row.workload,
            row.variant,
            row.events_per_second,
            shown(row.p50_us),
            shown(row.p99_us),
            matching.map_or("-".to_owned(), |ours| format!(
                "{:.0}",
                ours.events_per_second
            )),
            shown(matching.and_then(|ours| ours.p50_us)),
            rate_ratio.map_or(String::new(), |ratio| format!("{ratio:.2}x")),
            p50_ratio.map_or(String::new(), |ratio| format!("{ratio:.2}x")),
        );
    }
    Ok(())
}

fn shown(microseconds: Option<f64>) -> String {
    microseconds.map_or("-".to_owned(), |value| format!("{value:.0}"))
}

/// The `postgres` rows and the fsync probe of a factstr-bench JSON file.
fn read_ours(path: &PathBuf) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let document: Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    let rows = document["measurements"]
        .as_array()
        .ok_or("no measurements in the file")?;
    Ok(rows
        .iter()
        .filter(|row| row["store"] == "postgres" || row["store"] == "disk")
        .filter_map(|row| {
            let workload = match row["workload"].as_str()? {
                "fsync" => "fsync",
                "append" => "append",
                "live" => "live",
                "replay" => "replay",
                _ => return None,
            };
            Some(Row {
                workload,
                variant: row["variant"].as_str()?.to_owned(),
                events_per_second: row["events_per_second"].as_f64()?,
                p50_us: row["p50_us"].as_f64(),
                p99_us: row["p99_us"].as_f64(),
            })
        })
        .collect())
}
