//! `factstr export`: the log (or the part after a sequence number) and the
//! durable streams, in the export format, read batch by batch.

use std::fs::File;
use std::io::{BufWriter, Write};

use super::stdout;
use crate::cli::ExportArgs;
use crate::export_format::ExportWriter;
use crate::failure::{Failure, StoreResultExt};
use crate::progress::facts_bar;
use crate::store::{self, Opening};

/// Facts read per page of batches.
pub(crate) const PAGE_FACTS: usize = 10_000;

pub(crate) fn run(arguments: &ExportArgs) -> Result<(), Failure> {
    let store = store::open(&arguments.store, Opening::Existing)?;
    let out: Box<dyn Write> = match &arguments.output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(path).map_err(|error| {
                Failure::io(&format!("cannot create {}", path.display()), &error)
            })?,
        )),
        None => Box::new(stdout()),
    };
    let failed = |error: std::io::Error| Failure::io("writing the export", &error);
    let after = arguments.after.unwrap_or(0);
    // Streams first: their cursors are at most the head read after them,
    // so the export holds every fact a cursor points at.
    let streams = store
        .durable_streams()
        .or_fail("reading the durable streams")?;
    let head = store.log_stats().or_fail("reading the log's figures")?.head;
    let bar = facts_bar(head.saturating_sub(after));
    let mut export = ExportWriter::start(out).map_err(failed)?;
    let mut last = after;
    while last < head {
        let batches = store
            .read_batches(last, PAGE_FACTS)
            .or_fail("reading the log")?;
        let Some(end) = batches.last().and_then(|batch| batch.last()) else {
            break;
        };
        last = end.sequence_number;
        for batch in &batches {
            export.batch(batch).map_err(failed)?;
            bar.inc(batch.len() as u64);
        }
    }
    for stream in &streams {
        export.durable_stream(stream).map_err(failed)?;
    }
    export.finish().map_err(failed)?;
    bar.finish_and_clear();
    Ok(())
}
