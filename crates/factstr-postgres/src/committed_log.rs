//! The `CommittedLog` the shared dispatcher reads committed batches and
//! keeps durable cursors through.
//!
//! A stream catching up (a durable replay, a lagging live stream) reads
//! page after page, each one where the previous ended, and hands each to
//! its handler before it asks for the next. So when a page ends before the
//! requested range does, the next page is read at once on the store's
//! runtime while the handler works, and the next request takes it. The log
//! is append-only, so a page read early is the page read late.

use std::sync::Mutex;

use factstr::backend::sync::lock;
use factstr::backend::{BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState};
use factstr::{EventQuery, EventStoreError};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::bridge::{run_on, wait};
use crate::durable::DurableStreams;
use crate::read::Reader;

/// The store's log as the dispatcher sees it; each call runs on the
/// store's runtime.
pub(crate) struct PostgresLog {
    runtime: Handle,
    reader: Reader,
    durable: DurableStreams,
    /// Pages read ahead, newest last.
    read_ahead: Mutex<Vec<PageAhead>>,
}

/// Pages read ahead at most, one per stream catching up.
const MAX_PAGES_AHEAD: usize = 8;

/// A page read ahead: the request it answers and the read.
struct PageAhead {
    after: u64,
    through: u64,
    query: Option<EventQuery>,
    max_events: usize,
    page: JoinHandle<Result<CommittedBatchPage, EventStoreError>>,
}

impl PageAhead {
    fn answers(&self, request: &BatchReadRequest<'_>) -> bool {
        self.after == request.after
            && self.through == request.through
            && self.max_events == request.max_events
            && self.query.as_ref() == request.query
    }
}

impl PostgresLog {
    pub(crate) fn new(runtime: Handle, reader: Reader, durable: DurableStreams) -> Self {
        Self {
            runtime,
            reader,
            durable,
            read_ahead: Mutex::new(Vec::new()),
        }
    }

    /// Starts reading the page after `page` when `page` ended before the
    /// range of `request` did.
    fn read_next_page(&self, request: &BatchReadRequest<'_>, page: &CommittedBatchPage) {
        if page.scanned_through >= request.through || page.scanned_through <= request.after {
            return;
        }
        let reader = self.reader.clone();
        let query = request.query.cloned();
        let (after, through, max_events) =
            (page.scanned_through, request.through, request.max_events);
        let read_query = query.clone();
        let read = self.runtime.spawn(async move {
            reader
                .committed_batches(after, through, read_query.as_ref(), max_events)
                .await
        });
        let mut ahead = lock(&self.read_ahead);
        if ahead.len() >= MAX_PAGES_AHEAD {
            ahead.remove(0).page.abort();
        }
        ahead.push(PageAhead {
            after,
            through,
            query,
            max_events,
            page: read,
        });
    }
}

impl Drop for PostgresLog {
    fn drop(&mut self) {
        for ahead in lock(&self.read_ahead).drain(..) {
            ahead.page.abort();
        }
    }
}

impl CommittedLog for PostgresLog {
    fn committed_head(&self) -> Result<u64, EventStoreError> {
        let reader = self.reader.clone();
        run_on(&self.runtime, async move { reader.head().await })
    }

    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        let ahead = {
            let mut ahead = lock(&self.read_ahead);
            let found = ahead.iter().position(|ahead| ahead.answers(request));
            found.map(|index| ahead.remove(index))
        };
        let page = match ahead {
            Some(ahead) => wait(ahead.page).unwrap_or_else(|_| {
                Err(EventStoreError::backend(
                    "the store was closed before reading committed batches finished",
                ))
            }),
            None => {
                let reader = self.reader.clone();
                let (after, through, max_events) =
                    (request.after, request.through, request.max_events);
                let query = request.query.cloned();
                run_on(&self.runtime, async move {
                    reader
                        .committed_batches(after, through, query.as_ref(), max_events)
                        .await
                })
            }
        }?;
        self.read_next_page(request, &page);
        Ok(page)
    }

    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        let durable = self.durable.clone();
        let (name, query) = (name.to_owned(), query.clone());
        run_on(
            &self.runtime,
            async move { durable.open(&name, &query).await },
        )
    }

    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError> {
        self.durable.advance(name, cursor);
        Ok(())
    }

    fn close_durable_stream(&self, name: &str) {
        // Called on the stream's delivery thread, which may wait: the stream
        // reports that it stopped only once its cursor is written and its
        // name is free for other stores and processes too.
        let mut closed = self.durable.begin_close(&self.runtime, name);
        wait(async move {
            let _ = closed.wait_for(|finished| *finished).await;
        });
    }
}
