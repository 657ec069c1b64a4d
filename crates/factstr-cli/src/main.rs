//! The `factstr` command: inspect, follow, export, import and move a
//! FACTSTR event store. See `docs/cli.md`.

// A command talks to its user on standard output and standard error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod export_format;
mod failure;
mod filter;
mod output;
mod progress;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, StreamsCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("factstr: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), failure::Failure> {
    match command {
        Command::Stats { store, json } => commands::stats::run(&store, json),
        Command::Query(arguments) => commands::query::run(&arguments),
        Command::Tail(arguments) => commands::tail::run(&arguments),
        Command::Append(arguments) => commands::append::run(&arguments),
        Command::Export(arguments) => commands::export::run(&arguments),
        Command::Import { store, input } => commands::import::run(&store, input.as_deref()),
        Command::Copy(arguments) => commands::copy::run(&arguments),
        Command::Streams(arguments) => match (arguments.command, arguments.store) {
            (Some(StreamsCommand::Reset { store, name, to }), _) => {
                commands::streams::reset(&store, &name, to)
            }
            (Some(StreamsCommand::Delete { store, name }), _) => {
                commands::streams::delete(&store, &name)
            }
            (None, Some(store)) => commands::streams::list(&store),
            (None, None) => Err(failure::Failure::usage(
                "streams needs a store: factstr streams STORE",
            )),
        },
    }
}
