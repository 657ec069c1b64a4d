//! One module per command.

pub(crate) mod append;
pub(crate) mod copy;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod query;
pub(crate) mod stats;
pub(crate) mod streams;
pub(crate) mod tail;

use std::io::{self, Write};

use crate::failure::Failure;

/// Standard output, buffered; a closed pipe (`| head`) ends the command
/// quietly rather than as a failure.
pub(crate) fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(1 << 16, io::stdout().lock())
}

/// Maps a write failure on standard output.
pub(crate) fn written(result: io::Result<()>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => Err(Failure::io("writing to standard output", &error)),
    }
}

/// Flushes standard output.
pub(crate) fn flushed(out: &mut impl Write) -> Result<(), Failure> {
    written(out.flush())
}

/// `count` and `noun`, in the plural unless it is one ("1 fact", "2
/// facts"; "batch" becomes "batches").
pub(crate) fn counted(count: u64, noun: &str) -> String {
    match (count, noun.ends_with('h')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{count} {noun}es"),
        (_, false) => format!("{count} {noun}s"),
    }
}
