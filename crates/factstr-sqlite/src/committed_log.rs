//! The [`CommittedLog`] the shared stream dispatcher reads committed
//! batches and keeps durable streams through.

use std::path::Path;
use std::sync::Arc;

use factstr::backend::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, decode_durable_query,
    encode_durable_query,
};
use factstr::{EventQuery, EventStoreError};

use crate::durable::{self, DurableStreamClaims};
use crate::error::SqliteResultExt;
use crate::read;
use crate::readers::ReaderPool;
use crate::rows;
use crate::writer::Writer;

/// The log of one database file as the stream dispatcher sees it: reads on
/// the read connections, durable streams created and cursors written by the
/// writer, names claimed across processes.
pub(crate) struct SqliteLog {
    writer: Arc<Writer>,
    readers: Arc<ReaderPool>,
    claims: DurableStreamClaims,
}

impl SqliteLog {
    /// The log of the database at `path`.
    pub(crate) fn new(path: &Path, writer: Arc<Writer>, readers: Arc<ReaderPool>) -> Self {
        Self {
            writer,
            readers,
            claims: DurableStreamClaims::new(path),
        }
    }

    /// The stored query and cursor of `name`, creating it when new.
    fn stored_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        // Pending first: the writer may commit it before the read below, but
        // never lose it in between.
        let pending = self.writer.pending_cursor(name);
        let stored = self.readers.read(|connection| {
            durable::stored(connection, name).or_failed("reading a durable stream")
        })?;
        let (query_json, cursor) = match stored {
            Some((query_json, cursor)) => (query_json, rows::cursor(cursor)?),
            None => self
                .writer
                .open_durable_stream(name, encode_durable_query(name, query)?)?,
        };
        Ok(DurableStreamState {
            query: decode_durable_query(name, &query_json)?,
            cursor: cursor.max(pending.unwrap_or(0)),
        })
    }
}

impl CommittedLog for SqliteLog {
    fn committed_head(&self) -> Result<u64, EventStoreError> {
        self.readers
            .read(|connection| Ok(read::last_committed(connection)?.0))
    }

    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        self.readers
            .read(|connection| read::read_committed_batches(connection, request))
    }

    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        self.claims.claim(name)?;
        let stored = self.stored_durable_stream(name, query);
        if stored.is_err() {
            self.claims.release(name);
        }
        stored
    }

    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError> {
        self.writer.advance_durable_cursor(name, cursor)
    }

    fn close_durable_stream(&self, name: &str) {
        // Write the cursor before another process can claim the name.
        if let Err(error) = self.writer.flush_durable_cursors() {
            tracing::warn!(durable_stream = name, %error, "could not write the durable cursor on close");
        }
        self.claims.release(name);
    }
}
