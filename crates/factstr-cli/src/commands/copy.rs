//! `factstr copy`: the same as export piped into import, in bounded memory
//! and resumable.
//!
//! The copy continues after the destination's head (after checking that its
//! last fact is the source's fact of that number), so running it again after
//! an interruption neither repeats nor skips a fact. One thread reads pages
//! of whole batches from the source while the other writes the page before
//! it to the destination, each page in one transaction; at most two pages
//! are held. The durable streams follow the facts. With `--follow` it then
//! polls the source and copies each new commit until interrupted.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use factstr::backend::DurableStreamInfo;
use factstr::{EventQuery, EventRecord};

use super::export::PAGE_FACTS;
use super::{counted, flushed, stdout, written};
use crate::cli::CopyArgs;
use crate::failure::{Failure, StoreResultExt};
use crate::progress::facts_bar;
use crate::store::{self, Opening, Store};

/// How often `--follow` looks for new commits in the source.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

pub(crate) fn run(arguments: &CopyArgs) -> Result<(), Failure> {
    let source = store::open(&arguments.from, Opening::Existing)?;
    let destination = store::open(&arguments.to, Opening::CreateIfMissing)?;
    let started = Instant::now();
    let start = store::head(&*destination)?;
    check_continues(&*source, &*destination, start)?;
    let mut copied_through = start;
    let mut copied_streams = Vec::new();
    loop {
        // Streams before the head: their cursors are at most that head, so
        // every fact a cursor points at is copied before the cursor is.
        let streams = source
            .durable_streams()
            .or_fail("reading the source's durable streams")?;
        let source_head = store::head(&*source)?;
        if source_head > copied_through {
            copied_through = copy_facts(&*source, &*destination, copied_through, source_head)?;
        }
        copy_streams(&*destination, &streams, &mut copied_streams)?;
        if !arguments.follow {
            break;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
    let seconds = started.elapsed().as_secs_f64();
    let facts = copied_through - start;
    let mut out = stdout();
    written(writeln!(
        out,
        "copied {} ({}..={copied_through}) and {} in {seconds:.1} s ({:.0} facts/s)",
        counted(facts, "fact"),
        start + 1,
        counted(copied_streams.len() as u64, "durable stream"),
        facts as f64 / seconds.max(1e-9)
    ))?;
    flushed(&mut out)
}

/// Refuses a destination that is not a prefix of the source: its last fact
/// must be the source's fact of the same number.
fn check_continues(source: &dyn Store, destination: &dyn Store, head: u64) -> Result<(), Failure> {
    if head == 0 {
        return Ok(());
    }
    let at_head = |store: &dyn Store| -> Result<Option<EventRecord>, Failure> {
        let query = EventQuery::all().with_min_sequence_number(head - 1);
        Ok(store
            .query_page(&query, 1)
            .or_fail("reading the fact at the destination's head")?
            .event_records
            .into_iter()
            .next())
    };
    let in_destination = at_head(destination)?;
    match at_head(source)? {
        Some(in_source) if Some(&in_source) == in_destination.as_ref() => Ok(()),
        Some(_) => Err(Failure::new(format!(
            "the destination's fact {head} differs from the source's: it holds another log, \
             so nothing was copied"
        ))),
        None => Err(Failure::new(format!(
            "the destination's head {head} is beyond the source's log: it holds another log, \
             so nothing was copied"
        ))),
    }
}

/// Copies the facts after `after` up to at least `through`, in pages of
/// whole batches; returns the last sequence number copied.
fn copy_facts(
    source: &dyn Store,
    destination: &dyn Store,
    after: u64,
    through: u64,
) -> Result<u64, Failure> {
    let bar = facts_bar(through - after);
    let (pages, received) = mpsc::sync_channel::<Vec<Vec<EventRecord>>>(1);
    let copied = std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(), Failure> {
            let mut last = after;
            while last < through {
                let page = source
                    .read_batches(last, PAGE_FACTS)
                    .or_fail("reading the source")?;
                let Some(end) = page.last().and_then(|batch| batch.last()) else {
                    break;
                };
                last = end.sequence_number;
                if pages.send(page).is_err() {
                    // The writer failed; it reports why.
                    break;
                }
            }
            Ok(())
        });
        let mut last = after;
        for page in received {
            destination
                .import_batches(&page)
                .or_fail("writing to the destination")?;
            let facts: usize = page.iter().map(Vec::len).sum();
            bar.inc(facts as u64);
            last = page
                .last()
                .and_then(|batch| batch.last())
                .map_or(last, |record| record.sequence_number);
        }
        match reader.join() {
            Ok(read) => read.map(|()| last),
            Err(_) => Err(Failure::new("the thread reading the source failed")),
        }
    });
    bar.finish_and_clear();
    copied
}

/// Writes each source stream whose cursor the destination does not have
/// yet; `copied` remembers what was written.
fn copy_streams(
    destination: &dyn Store,
    streams: &[DurableStreamInfo],
    copied: &mut Vec<(String, u64)>,
) -> Result<(), Failure> {
    for stream in streams {
        let written_before = copied
            .iter()
            .find(|(name, _)| *name == stream.name)
            .map(|(_, cursor)| *cursor);
        if written_before == Some(stream.cursor) {
            continue;
        }
        destination
            .set_durable_stream(&stream.name, &stream.query, stream.cursor)
            .or_fail(&format!("copying durable stream `{}`", stream.name))?;
        copied.retain(|(name, _)| *name != stream.name);
        copied.push((stream.name.clone(), stream.cursor));
    }
    Ok(())
}
