//! Why a command failed, as the one line it prints on standard error.

use std::fmt;

use factstr::EventStoreError;

/// A command's failure; its `Display` is the line printed.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
}

impl Failure {
    /// A failure described by `message`.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Arguments that make no sense together.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(message)
    }

    /// Invalid JSON in `source` (an option or an input), naming the line
    /// and column serde_json reports.
    pub(crate) fn json(source: &str, error: &serde_json::Error) -> Self {
        Self::new(format!(
            "invalid JSON in {source} at line {} column {}: {}",
            error.line(),
            error.column(),
            without_position(error)
        ))
    }

    /// Invalid JSON on line `line` of `source` (an input of JSON Lines).
    pub(crate) fn json_line(source: &str, line: usize, error: &serde_json::Error) -> Self {
        Self::new(format!(
            "invalid JSON in {source} at line {line} column {}: {}",
            error.column(),
            without_position(error)
        ))
    }

    /// A failure of `what` on a file or stream.
    pub(crate) fn io(what: &str, error: &std::io::Error) -> Self {
        Self::new(format!("{what}: {error}"))
    }

    /// A store's refusal or failure while doing `what`.
    pub(crate) fn store(what: &str, error: &EventStoreError) -> Self {
        let message = match error {
            EventStoreError::InvalidInput { message }
            | EventStoreError::BackendFailure { message } => message.clone(),
            other => other.to_string(),
        };
        Self::new(format!("{what}: {message}"))
    }
}

/// serde_json's message without its " at line L column C" suffix, which
/// [`Failure::json`] puts first.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(position) => text[..position].to_owned(),
        None => text,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the message holds.
        formatter.write_str(&self.message.replace('\n', " "))
    }
}

/// Turns a store error into a [`Failure`] saying what was being done.
pub(crate) trait StoreResultExt<T> {
    fn or_fail(self, what: &str) -> Result<T, Failure>;
}

impl<T> StoreResultExt<T> for Result<T, EventStoreError> {
    fn or_fail(self, what: &str) -> Result<T, Failure> {
        self.map_err(|error| Failure::store(what, &error))
    }
}
