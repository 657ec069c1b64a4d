//! Measures every FACTSTR store the same way and reports throughput and
//! latency next to the physical limits (the disk's fsync rate).
//!
//! ```text
//! cargo run --release -p factstr-bench -- [--store memory|sqlite|postgres|all] [--quick] [--output FILE]
//! ```
//!
//! Progress goes to stderr while it runs; the table goes to stdout and the
//! JSON results to `--output` (default `bench-results/latest.json`). Without
//! `DATABASE_URL`, PostgreSQL runs on a throwaway server started the way the
//! tests start one (`scripts/postgres`).

// A command-line program: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod fsync;
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

const USAGE: &str =
    "usage: factstr-bench [--store memory|sqlite|postgres|all] [--quick] [--output FILE]

  --store    which store(s) to measure (default: all)
  --quick    small sizes and short runs (under two minutes for all stores)
  --output   where to write the JSON results (default: bench-results/latest.json)

PostgreSQL: set DATABASE_URL to use an existing server (a fresh schema per workload);
otherwise a throwaway server is started with scripts/postgres.";

struct Options {
    stores: Vec<StoreKind>,
    quick: bool,
    output: PathBuf,
}

impl Options {
    fn parse(arguments: &[String]) -> Result<Option<Self>, String> {
        let mut options = Options {
            stores: StoreKind::ALL.to_vec(),
            quick: false,
            output: PathBuf::from("bench-results/latest.json"),
        };
        let mut arguments = arguments.iter();
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--quick" => options.quick = true,
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
    let settings = Settings::new(options.quick);
    let mut measurements: Vec<Measurement> = Vec::new();

    let scratch = stores::Scratch::new()?;
    eprintln!(
        "[disk] measuring the fsync rate in {}",
        scratch.path().display()
    );
    measurements.push(fsync::measure(scratch.path(), settings.run_time())?);
    if options.stores.contains(&stores::StoreKind::Sqlite) {
        eprintln!("[disk] measuring bare SQLite commits");
        measurements.push(fsync::measure_bare_sqlite(
            scratch.path(),
            settings.run_time(),
        )?);
    }

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
