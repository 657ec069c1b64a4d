//! Measures every FACTSTR store the same way and reports throughput and
//! latency next to the physical limits (the disk's fsync rate) and next to
//! reference rows measured in the same run: the published `factstr-memory`
//! 0.5.2 for the memory store, the bare engine for SQLite and PostgreSQL.
//!
//! ```text
//! cargo run --release -p factstr-bench -- [--store memory|sqlite|postgres|all] [--side-by-side] [--only WORKLOAD] [--quick] [--output FILE]
//! ```
//!
//! Progress goes to stderr while it runs; the table goes to stdout and the
//! JSON results to `--output` (default `bench-results/latest.json`). Without
//! `DATABASE_URL`, PostgreSQL runs on a throwaway server started the way the
//! tests start one (`scripts/postgres`).

// A command-line program: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod api;
mod async_workloads;
mod bare;
mod fsync;
mod paired;
mod report;
mod stats;
mod stores;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::report::Measurement;
use crate::stores::StoreKind;
use crate::workloads::Settings;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if let Some(result) = async_workloads::run_command(&arguments) {
        return exit(result);
    }
    if arguments.first().map(String::as_str) == Some(workloads::CHILD_APPEND_COMMAND) {
        return exit(workloads::run_child_appender(&arguments[1..]));
    }
    match Options::parse(&arguments) {
        Ok(Some(options)) => exit(run(options)),
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

const USAGE: &str = "usage: factstr-bench [--store memory|sqlite|postgres|all] [--side-by-side] [--only WORKLOAD] [--quick] [--output FILE]

  --store         which store(s) to measure (default: all)
  --side-by-side  only the workloads that have a reference row (below)
  --only          only one workload: append, query (with append_if), live or replay
  --quick         small sizes and short runs (under two minutes for all stores)
  --output        where to write the JSON results (default: bench-results/latest.json)

Reference rows run in the same run, in turns with the store's own row (slices of
250 ms, or alternate calls), and the table prints each store row's ratio to its
reference (`vs ref`, and a summary per kind at the end; the JSON carries it as
`compared` on the store's row):
  memory    the published factstr-memory 0.5.2 (store `memory-0.5.2`): appends of
            1, 100 and 1,000 events from one thread, queries and append_if at 10,000
            and 100,000 events, live latency with 1 and 100 streams, durable replay
            in batches of 10 and 100. Ratio > 1: ours is faster (ours / 0.5.2
            events/s, 0.5.2 / ours p50).
  sqlite    bare SQLite (`sqlite-bare`, the bundled SQLite, WAL, one row per event,
            no index): appends of 1 and 100 events with synchronous FULL and
            NORMAL, and a paged read of its rows against replay. Shown as the
            store's share of the bare rate.
  postgres  bare PostgreSQL (`postgres-bare`, the same server through sqlx, one row
            per event, no index): appends of 1 and 100 events, a SELECT 1 round
            trip against every query (p50), and a paged read against replay.
            --side-by-side also runs live latency with 1 stream: with the appends,
            the row bench/factstr-052-postgres measures on 0.5.2's PostgreSQL
            store (a separate program: sqlx 0.8); see its --compare.

PostgreSQL: set DATABASE_URL to use an existing server (a fresh schema per workload);
otherwise a throwaway server is started with scripts/postgres.";

struct Options {
    stores: Vec<StoreKind>,
    quick: bool,
    side_by_side_only: bool,
    only: Option<String>,
    output: PathBuf,
}

impl Options {
    fn parse(arguments: &[String]) -> Result<Option<Self>, String> {
        let mut options = Options {
            stores: StoreKind::ALL.to_vec(),
            quick: false,
            side_by_side_only: false,
            only: None,
            output: PathBuf::from("bench-results/latest.json"),
        };
        let mut arguments = arguments.iter();
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--quick" => options.quick = true,
                "--side-by-side" => options.side_by_side_only = true,
                "--only" => {
                    let value = arguments.next().ok_or("--only needs a workload")?;
                    if !["append", "query", "live", "replay"].contains(&value.as_str()) {
                        return Err(format!(
                            "unknown workload `{value}` (append, query, live, replay)"
                        ));
                    }
                    options.only = Some(value.clone());
                }
                "--store" => {
                    let value = arguments.next().ok_or("--store needs a value")?;
                    options.stores = match value.as_str() {
                        "all" => StoreKind::ALL.to_vec(),
                        name => {
                            vec![StoreKind::parse(name).ok_or(format!("unknown store `{name}`"))?]
                        }
                    };
                }
                "--output" => {
                    options.output =
                        PathBuf::from(arguments.next().ok_or("--output needs a value")?);
                }
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(Some(options))
    }
}

fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let settings = Settings::new(options.quick, options.side_by_side_only, options.only);
    let mut measurements: Vec<Measurement> = Vec::new();

    let scratch = stores::Scratch::new()?;
    eprintln!(
        "[disk] measuring the fsync rate in {}",
        scratch.path().display()
    );
    measurements.push(fsync::measure(scratch.path(), settings.run_time())?);

    for kind in &options.stores {
        eprintln!("[{kind}] opening");
        let factory = stores::StoreFactory::new(*kind, &scratch)?;
        let mut rows = workloads::run_all(&factory, &settings)?;
        measurements.append(&mut rows);
    }

    let document = report::Document::new(
        options.quick,
        &options.stores,
        measurements,
        started.elapsed(),
    );
    println!("{}", document.table());
    document.write(&options.output)?;
    eprintln!(
        "wrote {} in {:.0} s total",
        options.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
