//! The error type plugin authors return, and how it crosses the boundary (JSON
//! `{"code","message"}`).

use std::fmt;

/// A failure reported by a plugin or by the host to a plugin: a stable snake_case `code` and a
/// human message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Error {
    /// Machine-readable code, for example `bad_request` or `dependency_not_declared`.
    pub code: String,
    /// Human-readable message, lowercase, naming what failed.
    pub message: String,
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// An error with the generic code `plugin_error`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new("plugin_error", message)
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"code":"internal","message":"unserialisable error"}"#.to_vec())
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Self::new("internal", String::from_utf8_lossy(bytes).into_owned()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new("serialization", e.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::msg(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::msg(message)
    }
}
