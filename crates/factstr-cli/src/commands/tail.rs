//! `factstr tail`: matching facts committed after a point, then every new
//! matching commit as it happens, as JSON Lines, until interrupted.

use std::sync::mpsc;

use factstr::{EventRecord, HandleStream, QueryPages, StreamHandlerError};

use super::{flushed, stdout, written};
use crate::cli::TailArgs;
use crate::failure::{Failure, StoreResultExt};
use crate::filter::event_query;
use crate::output::write_json_line;
use crate::store::{self, Opening};

const PAGE: usize = 1_000;

pub(crate) fn run(arguments: &TailArgs) -> Result<(), Failure> {
    let query = event_query(&arguments.filter)?;
    let store = store::open(&arguments.store, Opening::Existing)?;
    // The live stream first, then the history up to the head: together they
    // cover every commit, and facts seen twice are printed once.
    let (sender, batches) = mpsc::channel::<Vec<EventRecord>>();
    let handle = HandleStream::new(move |batch| {
        let sender = sender.clone();
        async move {
            sender
                .send(batch)
                .map_err(|_| StreamHandlerError::new("tail has stopped"))
        }
    });
    let _stream = store
        .stream_to(&query, handle)
        .or_fail("cannot follow the store")?;
    let from = match arguments.from {
        Some(from) => from,
        None => store::head(&*store)?,
    };
    let mut out = stdout();
    let mut printed = from;
    let history = query.clone().with_min_sequence_number(from);
    for page in QueryPages::new(&*store, &history, PAGE) {
        for record in page.or_fail("query failed")?.event_records {
            written(write_json_line(&mut out, &record))?;
            printed = record.sequence_number;
        }
    }
    flushed(&mut out)?;
    for batch in batches {
        for record in &batch {
            if record.sequence_number > printed {
                written(write_json_line(&mut out, record))?;
                printed = record.sequence_number;
            }
        }
        flushed(&mut out)?;
    }
    Err(Failure::new("the store stopped the live stream"))
}
