//! What callers ask of the writer, and how they are answered.

use std::sync::mpsc::SyncSender;

use factstr::backend::Condition;
use factstr::{AppendResult, EventStoreError};
use futures::channel::oneshot;

use crate::rows::PreparedBatch;

/// Where a caller waits for its answer: blocked on a channel (the sync API)
/// or awaiting a future (the async API). The writer answers both the same
/// way.
pub(super) enum Reply<T> {
    Blocking(SyncSender<Result<T, EventStoreError>>),
    Awaited(oneshot::Sender<Result<T, EventStoreError>>),
}

impl<T> Reply<T> {
    /// Hands `outcome` to the caller; whether it was still waiting.
    fn send(self, outcome: Result<T, EventStoreError>) -> bool {
        match self {
            Reply::Blocking(sender) => sender.send(outcome).is_ok(),
            Reply::Awaited(sender) => sender.send(outcome).is_ok(),
        }
    }
}

impl<T> From<SyncSender<Result<T, EventStoreError>>> for Reply<T> {
    fn from(sender: SyncSender<Result<T, EventStoreError>>) -> Self {
        Reply::Blocking(sender)
    }
}

pub(super) enum WriteRequest {
    Append {
        batch: PreparedBatch,
        condition: Option<Condition>,
        reply: Reply<AppendResult>,
    },
    OpenDurableStream {
        name: String,
        query_json: String,
        reply: Reply<(String, u64)>,
    },
    /// Commit the pending cursor updates now and answer.
    FlushCursors { reply: Reply<()> },
    /// Cursor updates are pending.
    CursorsPending,
}

impl WriteRequest {
    /// Whether the request writes to the database.
    pub(super) fn writes(&self) -> bool {
        matches!(
            self,
            WriteRequest::Append { .. } | WriteRequest::OpenDurableStream { .. }
        )
    }

    /// Answers the request with `error`, unhandled.
    pub(super) fn fail(self, error: &EventStoreError) {
        let answer = match self {
            WriteRequest::Append { reply, .. } => Answer::Append(reply, Err(error.clone())),
            WriteRequest::OpenDurableStream { reply, .. } => {
                Answer::OpenDurableStream(reply, Err(error.clone()))
            }
            WriteRequest::FlushCursors { reply } => Answer::FlushCursors(reply, Err(error.clone())),
            WriteRequest::CursorsPending => return,
        };
        answer.send();
    }
}

/// A request's answer.
pub(super) enum Answer {
    Append(Reply<AppendResult>, Result<AppendResult, EventStoreError>),
    OpenDurableStream(Reply<(String, u64)>, Result<(String, u64), EventStoreError>),
    FlushCursors(Reply<()>, Result<(), EventStoreError>),
}

impl Answer {
    pub(super) fn send(self) {
        // A caller that gave up waiting is no reason to stop.
        let _ = match self {
            Answer::Append(reply, outcome) => reply.send(outcome),
            Answer::OpenDurableStream(reply, outcome) => reply.send(outcome),
            Answer::FlushCursors(reply, outcome) => reply.send(outcome),
        };
    }
}
