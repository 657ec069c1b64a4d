//! The `CommittedLog` the shared dispatcher reads committed batches and
//! keeps durable cursors through.

use factstr::backend::{BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState};
use factstr::{EventQuery, EventStoreError};
use tokio::runtime::Handle;

use crate::bridge::{run_on, wait};
use crate::durable::DurableStreams;
use crate::read::Reader;

/// The store's log as the dispatcher sees it; each call runs on the
/// store's runtime.
pub(crate) struct PostgresLog {
    runtime: Handle,
    reader: Reader,
    durable: DurableStreams,
}

impl PostgresLog {
    pub(crate) fn new(runtime: Handle, reader: Reader, durable: DurableStreams) -> Self {
        Self {
            runtime,
            reader,
            durable,
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
        let reader = self.reader.clone();
        let (after, through, max_events) = (request.after, request.through, request.max_events);
        let query = request.query.cloned();
        run_on(&self.runtime, async move {
            reader
                .committed_batches(after, through, query.as_ref(), max_events)
                .await
        })
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
