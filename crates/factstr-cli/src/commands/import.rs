//! `factstr import`: loads an export into a store that is empty or whose
//! head is right before the export's first fact.
//!
//! The input is read twice: first to check all of it (format, batches,
//! sequence numbers, commit times, the end line) against the store, so a
//! file that cannot be imported writes nothing; then to write it in
//! transactions of whole batches (about [`PAGE_FACTS`] facts each), and the
//! durable streams last. A file is read from disk both times; standard
//! input is held in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use factstr::EventRecord;
use factstr::backend::{check_imported_batches, normalized_stream_query};

use super::export::PAGE_FACTS;
use super::{counted, flushed, stdout, written};
use crate::export_format::{ExportReader, ExportedStream, Item, Totals};
use crate::failure::{Failure, StoreResultExt};
use crate::progress::facts_bar;
use crate::store::{self, Opening, Store};

pub(crate) fn run(url: &str, input: Option<&Path>) -> Result<(), Failure> {
    let source = input.map_or("standard input".to_owned(), |path| {
        path.display().to_string()
    });
    let held: Option<Vec<u8>> = match input {
        Some(_) => None,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|error| Failure::io("reading standard input", &error))?;
            Some(bytes)
        }
    };
    let open_input = || -> Result<Box<dyn BufRead + '_>, Failure> {
        match (&held, input) {
            (Some(bytes), _) => Ok(Box::new(Cursor::new(bytes.as_slice()))),
            (None, Some(path)) => File::open(path)
                .map(|file| Box::new(BufReader::with_capacity(1 << 16, file)) as Box<dyn BufRead>)
                .map_err(|error| Failure::io(&format!("cannot open {source}"), &error)),
            (None, None) => Err(Failure::new("no input")),
        }
    };
    let checked = check(ExportReader::open(open_input()?, &source)?)?;
    let store = store::open(url, Opening::CreateIfMissing)?;
    check_against_store(&*store, &checked)?;
    write(
        &*store,
        ExportReader::open(open_input()?, &source)?,
        &checked,
    )
}

/// What the first reading found.
struct Checked {
    first: Option<(u64, DateTime<Utc>)>,
    last: u64,
    totals: Totals,
    streams: Vec<ExportedStream>,
}

/// Reads the whole export, checking that its batches follow each other and
/// that its end line counts what it holds.
fn check(mut reader: ExportReader<impl BufRead>) -> Result<Checked, Failure> {
    let mut checked = Checked {
        first: None,
        last: 0,
        totals: Totals::default(),
        streams: Vec::new(),
    };
    let mut previous_time = None;
    while let Some(item) = reader.next_item()? {
        let at_line = |failure: Failure| {
            Failure::new(format!("before line {}: {failure}", reader.line_number()))
        };
        match item {
            Item::Batch(batch) => {
                let Some(first) = batch.first() else { continue };
                let after = match checked.first {
                    None => {
                        checked.first = Some((first.sequence_number, first.occurred_at));
                        first.sequence_number.saturating_sub(1)
                    }
                    Some(_) => checked.last,
                };
                check_imported_batches(after, std::slice::from_ref(&batch))
                    .or_fail("the export's batches do not follow each other")
                    .map_err(at_line)?;
                if previous_time.is_some_and(|previous| first.occurred_at < previous) {
                    return Err(at_line(Failure::new(
                        "a batch was committed before the batch preceding it",
                    )));
                }
                previous_time = Some(first.occurred_at);
                checked.last = batch
                    .last()
                    .map_or(checked.last, |record| record.sequence_number);
                checked.totals.facts += batch.len() as u64;
                checked.totals.batches += 1;
            }
            Item::Stream(stream) => {
                checked.totals.durable_streams += 1;
                checked.streams.push(stream);
            }
            Item::End(totals) => {
                if totals != checked.totals {
                    return Err(Failure::new(format!(
                        "the export's end line counts {totals:?}, but it holds {:?}",
                        checked.totals
                    )));
                }
            }
        }
    }
    Ok(checked)
}

/// Refuses an export that does not continue the store's log, or whose
/// durable streams clash with the store's.
fn check_against_store(store: &dyn Store, checked: &Checked) -> Result<(), Failure> {
    let stats = store.log_stats().or_fail("reading the store's figures")?;
    let mut head_after = stats.head;
    if let Some((first, first_time)) = checked.first {
        if first != stats.head + 1 {
            return Err(Failure::new(format!(
                "the export starts at sequence number {first}, but the store's head is {} \
                 (it must be {}); nothing was imported",
                stats.head,
                first.saturating_sub(1)
            )));
        }
        if let Some(last_commit) = stats.last_commit
            && first_time < last_commit
        {
            return Err(Failure::new(format!(
                "the export's first batch was committed before the store's last commit \
                 ({last_commit}); nothing was imported"
            )));
        }
        head_after = checked.last;
    }
    let existing = store
        .durable_streams()
        .or_fail("reading the store's durable streams")?;
    for stream in &checked.streams {
        if stream.cursor > head_after {
            return Err(Failure::new(format!(
                "durable stream `{}` has cursor {}, beyond the log's head {head_after} after \
                 the import; nothing was imported",
                stream.name, stream.cursor
            )));
        }
        if let Some(present) = existing.iter().find(|present| present.name == stream.name) {
            if present.query != normalized_stream_query(&stream.query) {
                return Err(Failure::new(format!(
                    "durable stream `{}` exists in the store with another query; nothing was \
                     imported",
                    stream.name
                )));
            }
            if present.active == Some(true) {
                return Err(Failure::new(format!(
                    "durable stream `{}` is active on the store; stop it first (nothing was \
                     imported)",
                    stream.name
                )));
            }
        }
    }
    Ok(())
}

/// Writes the checked export in transactions of whole batches, then its
/// durable streams.
fn write(
    store: &dyn Store,
    mut reader: ExportReader<impl BufRead>,
    checked: &Checked,
) -> Result<(), Failure> {
    let bar = facts_bar(checked.totals.facts);
    let mut chunk: Vec<Vec<EventRecord>> = Vec::new();
    let mut chunk_facts = 0;
    while let Some(item) = reader.next_item()? {
        if let Item::Batch(batch) = item {
            chunk_facts += batch.len();
            chunk.push(batch);
            if chunk_facts >= PAGE_FACTS {
                store.import_batches(&chunk).or_fail("the import failed")?;
                bar.inc(chunk_facts as u64);
                chunk.clear();
                chunk_facts = 0;
            }
        }
    }
    store.import_batches(&chunk).or_fail("the import failed")?;
    for stream in &checked.streams {
        store
            .set_durable_stream(&stream.name, &stream.query, stream.cursor)
            .or_fail(&format!("importing durable stream `{}`", stream.name))?;
    }
    bar.finish_and_clear();
    let range = match checked.first {
        Some((first, _)) => format!(" ({first}..={})", checked.last),
        None => String::new(),
    };
    let mut out = stdout();
    written(writeln!(
        out,
        "imported {}{range} in {} and {}",
        counted(checked.totals.facts, "fact"),
        counted(checked.totals.batches, "batch"),
        counted(checked.totals.durable_streams, "durable stream")
    ))?;
    flushed(&mut out)
}
