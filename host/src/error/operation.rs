//! [`Operation`]: what a plugin was doing when a call into it failed or timed out.

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
    }
}
