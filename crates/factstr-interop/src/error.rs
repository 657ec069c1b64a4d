use factstr::EventStoreError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Input that cannot become a contract value; names the field at fault
/// (`filters[0].event_types[2]`, `events[1].event_type`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct InteropError {
    field: String,
    problem: String,
}

impl InteropError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The path of the offending field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl From<InteropError> for EventStoreError {
    fn from(error: InteropError) -> Self {
        EventStoreError::invalid_input(error.to_string())
    }
}

/// The stable code of each [`EventStoreError`] variant, as adapters expose it
/// (`err.code` in JavaScript).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// [`EventStoreError::EmptyAppend`].
    #[serde(rename = "FACTSTR_EMPTY_APPEND")]
    EmptyAppend,
    /// [`EventStoreError::ConditionalAppendConflict`].
    #[serde(rename = "FACTSTR_CONDITIONAL_APPEND_CONFLICT")]
    ConditionalAppendConflict,
    /// [`EventStoreError::NotImplemented`].
    #[serde(rename = "FACTSTR_NOT_IMPLEMENTED")]
    NotImplemented,
    /// [`EventStoreError::BackendFailure`].
    #[serde(rename = "FACTSTR_BACKEND_FAILURE")]
    BackendFailure,
    /// [`EventStoreError::InvalidInput`], also used for [`InteropError`].
    #[serde(rename = "FACTSTR_INVALID_INPUT")]
    InvalidInput,
}

impl ErrorCode {
    /// The code of `error`.
    pub fn of(error: &EventStoreError) -> Self {
        match error {
            EventStoreError::EmptyAppend => Self::EmptyAppend,
            EventStoreError::ConditionalAppendConflict { .. } => Self::ConditionalAppendConflict,
            EventStoreError::NotImplemented { .. } => Self::NotImplemented,
            EventStoreError::BackendFailure { .. } => Self::BackendFailure,
            EventStoreError::InvalidInput { .. } => Self::InvalidInput,
        }
    }

    /// The code as a string, e.g. `FACTSTR_EMPTY_APPEND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyAppend => "FACTSTR_EMPTY_APPEND",
            Self::ConditionalAppendConflict => "FACTSTR_CONDITIONAL_APPEND_CONFLICT",
            Self::NotImplemented => "FACTSTR_NOT_IMPLEMENTED",
            Self::BackendFailure => "FACTSTR_BACKEND_FAILURE",
            Self::InvalidInput => "FACTSTR_INVALID_INPUT",
        }
    }
}

/// An [`EventStoreError`] as data: its code, its message, and the versions of
/// a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStoreErrorDto {
    /// The variant's stable code.
    pub code: ErrorCode,
    /// The error's Display text.
    pub message: String,
    /// For conflicts: the version the caller expected.
    #[serde(default)]
    pub expected_context_version: Option<u64>,
    /// For conflicts: the version the store found.
    #[serde(default)]
    pub actual_context_version: Option<u64>,
}

impl From<&EventStoreError> for EventStoreErrorDto {
    fn from(error: &EventStoreError) -> Self {
        let (expected_context_version, actual_context_version) = match error {
            EventStoreError::ConditionalAppendConflict { expected, actual } => (*expected, *actual),
            _ => (None, None),
        };
        Self {
            code: ErrorCode::of(error),
            message: error.to_string(),
            expected_context_version,
            actual_context_version,
        }
    }
}

impl From<&EventStoreErrorDto> for EventStoreError {
    /// Rebuilds the error. `NotImplemented` carries static names, which a DTO
    /// cannot restore; it comes back as a `BackendFailure` with the message.
    fn from(dto: &EventStoreErrorDto) -> Self {
        let detail = |prefix: &str| {
            dto.message
                .strip_prefix(prefix)
                .unwrap_or(&dto.message)
                .to_owned()
        };
        match dto.code {
            ErrorCode::EmptyAppend => EventStoreError::EmptyAppend,
            ErrorCode::ConditionalAppendConflict => EventStoreError::ConditionalAppendConflict {
                expected: dto.expected_context_version,
                actual: dto.actual_context_version,
            },
            ErrorCode::InvalidInput => EventStoreError::InvalidInput {
                message: detail("invalid input: "),
            },
            ErrorCode::BackendFailure => EventStoreError::BackendFailure {
                message: detail("backend failure: "),
            },
            ErrorCode::NotImplemented => EventStoreError::BackendFailure {
                message: dto.message.clone(),
            },
        }
    }
}
