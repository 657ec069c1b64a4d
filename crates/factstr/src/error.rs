use thiserror::Error;

/// Every error an [`EventStore`](crate::EventStore) returns.
///
/// Backend errors (I/O, SQL, connections) are mapped to [`BackendFailure`](Self::BackendFailure)
/// at the store boundary; input the store cannot accept is
/// [`InvalidInput`](Self::InvalidInput) and never changes stored data.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EventStoreError {
    /// `append` or `append_if` was called with no events.
    #[error("append requires at least one event")]
    EmptyAppend,
    /// The context of an `append_if` changed: its current version is `actual`,
    /// not `expected`. Nothing was written.
    #[error("context version mismatch: expected {expected:?}, actual {actual:?}")]
    ConditionalAppendConflict {
        /// The context version the caller expected.
        expected: Option<u64>,
        /// The context version the store found.
        actual: Option<u64>,
    },
    /// The store does not offer this operation.
    #[error("{store} does not implement {operation} yet")]
    NotImplemented {
        /// The store's name.
        store: &'static str,
        /// The operation's name.
        operation: &'static str,
    },
    /// The storage backend failed (I/O, SQL, connection, a stream that could
    /// not be started, an active durable stream name, ...). The message says
    /// what failed.
    #[error("backend failure: {message}")]
    BackendFailure {
        /// What failed.
        message: String,
    },
    /// The input cannot be accepted; the message names the offending value.
    /// Nothing was changed.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong, naming the value.
        message: String,
    },
}

impl EventStoreError {
    /// A [`BackendFailure`](Self::BackendFailure) with `message`.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::BackendFailure {
            message: message.into(),
        }
    }

    /// An [`InvalidInput`](Self::InvalidInput) with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }
}
