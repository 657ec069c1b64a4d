//! The command line: commands, arguments and their help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Inspect, follow, export, import and move a FACTSTR event store.
///
/// A store is named by a URL: `sqlite:PATH` for a SQLite file, or
/// `postgres://…`/`postgresql://…` for PostgreSQL (the tables in the schema
/// the connection's `search_path` names; add `?schema=NAME` or
/// `?options=-csearch_path%3DNAME` to choose one).
#[derive(Debug, Parser)]
#[command(name = "factstr", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Facts, batches, head, commit times, facts per type, durable streams.
    Stats {
        /// The store's URL.
        store: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the facts matching a filter.
    Query(QueryArgs),
    /// Print matching facts as they are committed, until interrupted.
    Tail(TailArgs),
    /// Append one batch: one fact from the options, or JSON Lines of
    /// `{"event_type", "payload"}` from standard input.
    Append(AppendArgs),
    /// Write the log (or the part after a sequence number) and its durable
    /// streams as JSON Lines.
    Export(ExportArgs),
    /// Load an export into a store that is empty or whose head is right
    /// before the export's first fact; anything else writes nothing.
    Import {
        /// The store's URL.
        store: String,
        /// Read the export from this file instead of standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
    },
    /// Copy a log with its durable streams from one store to another,
    /// continuing after the destination's head when run again.
    Copy(CopyArgs),
    /// List durable streams, or move or delete one.
    Streams(StreamsArgs),
}

/// The filter of `query` and `tail`: several `--type` are alternatives,
/// several `--where` are alternatives, and a fact must match both parts.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// An event type to match (repeatable: any of them).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) types: Vec<String>,
    /// A JSON payload predicate (repeatable: any of them), matched as a
    /// recursive subset of the payload.
    #[arg(long = "where", value_name = "JSON")]
    pub(crate) predicates: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The store's URL.
    pub(crate) store: String,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Only facts after this sequence number.
    #[arg(long, value_name = "N")]
    pub(crate) after: Option<u64>,
    /// At most this many facts.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    /// JSON Lines (the default when standard output is not a terminal).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The store's URL.
    pub(crate) store: String,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Start after this sequence number (default: the head).
    #[arg(long, value_name = "N")]
    pub(crate) from: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The store's URL.
    pub(crate) store: String,
    /// The event type of the one fact to append (without it, facts are
    /// read from standard input).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) event_type: Option<String>,
    /// The fact's payload as JSON (default `{}`).
    #[arg(long, value_name = "JSON", requires = "event_type")]
    pub(crate) payload: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The store's URL.
    pub(crate) store: String,
    /// Only the facts after this sequence number (the last of a batch).
    #[arg(long, value_name = "N")]
    pub(crate) after: Option<u64>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The source store's URL.
    pub(crate) from: String,
    /// The destination store's URL.
    pub(crate) to: String,
    /// After catching up, keep copying new commits until interrupted.
    #[arg(long)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct StreamsArgs {
    #[command(subcommand)]
    pub(crate) command: Option<StreamsCommand>,
    /// The store's URL: lists its durable streams.
    pub(crate) store: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Move a durable stream's cursor (back or forward); refused while the
    /// stream runs anywhere.
    Reset {
        /// The store's URL.
        store: String,
        /// The durable stream's name.
        name: String,
        /// The new cursor: the stream continues after this sequence number.
        #[arg(long, value_name = "N")]
        to: u64,
    },
    /// Delete a durable stream; refused while it runs anywhere.
    Delete {
        /// The store's URL.
        store: String,
        /// The durable stream's name.
        name: String,
    },
}
