//! The enumerations errors carry instead of strings: [`Operation`], what a plugin was doing
//! when a call into it failed or timed out; [`Change`], the lifecycle change a requester gave up
//! on; [`ResultLimit`], the limit a statement's result went over.

use serde::Serialize;

/// What the host was running in a plugin (the `operation` of a `timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Operation {
    /// Opening the library on the plugin's thread (its initialisers run).
    Open,
    /// Constructing the plugin object.
    Create,
    /// Its `initialize` hook.
    Initialize,
    /// An `execute` call.
    Execute,
    /// A call of a named function.
    Call,
    /// Its `enable` hook.
    Enable,
    /// Its `disable` hook.
    Disable,
    /// Its `cleanup` hook.
    Cleanup,
}

impl Operation {
    /// The lowercase name, as in the error details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Create => "create",
            Self::Initialize => "initialize",
            Self::Execute => "execute",
            Self::Call => "call",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Cleanup => "cleanup",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle change of the manager (the `operation` of an abandoned change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// Loading a plugin.
    Load,
    /// Replacing a plugin by a new instance.
    Reload,
    /// Unloading a plugin.
    Unload,
    /// Changing a plugin's configuration or overrides.
    SettingsChange,
    /// Enabling a plugin.
    Enable,
    /// Disabling a plugin.
    Disable,
}

impl Change {
    /// The name, as in messages: `load`, `settings change`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Reload => "reload",
            Self::Unload => "unload",
            Self::SettingsChange => "settings change",
            Self::Enable => "enable",
            Self::Disable => "disable",
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit on one tables statement's result (the `limit` of `result_too_large`), serialised as
/// its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum ResultLimit {
    /// `limits.tables_max_rows`.
    #[serde(rename = "limits.tables_max_rows")]
    MaxRows,
    /// `limits.tables_max_bytes`.
    #[serde(rename = "limits.tables_max_bytes")]
    MaxBytes,
}

impl ResultLimit {
    /// Its configuration key.
    pub fn key(self) -> &'static str {
        match self {
            Self::MaxRows => "limits.tables_max_rows",
            Self::MaxBytes => "limits.tables_max_bytes",
        }
    }
}

impl std::fmt::Display for ResultLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// A kind of backend (the `kind` of `backend_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// Where plugins' tables live.
    Tables,
    /// Where plugins' topics live.
    Topics,
    /// Where plugins' buckets live.
    Buckets,
}

impl BackendKind {
    /// The lowercase name, as in the configuration (`[backends.tables]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tables => "tables",
            Self::Topics => "topics",
            Self::Buckets => "buckets",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_its_name() {
        for op in [
            Operation::Open,
            Operation::Create,
            Operation::Initialize,
            Operation::Execute,
            Operation::Enable,
            Operation::Disable,
            Operation::Cleanup,
        ] {
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
        }
        for limit in [ResultLimit::MaxRows, ResultLimit::MaxBytes] {
            assert_eq!(serde_json::to_value(limit).unwrap(), limit.key());
        }
    }
}
