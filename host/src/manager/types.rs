//! The manager's public value types: plugin states, the plugin object of the admin API,
//! reports and lifecycle events.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::resources::Overrides;

/// Where a plugin is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
#[repr(u8)]
pub enum PluginState {
    /// Being opened and initialised.
    Loading = 0,
    /// Serving calls and events.
    Active = 1,
    /// Loaded, but refusing `execute` until enabled.
    Disabled = 2,
    /// Draining and cleaning up before unload.
    Stopping = 3,
    /// Initialize or cleanup failed or hung; the error is kept.
    Failed = 4,
    /// Closed and unmapped.
    Unloaded = 5,
    /// Closed, but the OS kept the code mapped (or it was leaked because it may still run).
    Retained = 6,
}

impl PluginState {
    /// The state stored as `byte` by [`PluginState::as_byte`] (for an atomic cell); `None` for
    /// a byte no state has.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Loading,
            1 => Self::Active,
            2 => Self::Disabled,
            3 => Self::Stopping,
            4 => Self::Failed,
            5 => Self::Unloaded,
            6 => Self::Retained,
            _ => return None,
        })
    }

    /// The state as one byte, for an atomic cell.
    pub(crate) fn as_byte(self) -> u8 {
        self as u8
    }

    /// Lowercase name, as in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Stopping => "stopping",
            Self::Failed => "failed",
            Self::Unloaded => "unloaded",
            Self::Retained => "retained",
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a library when it was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum UnloadOutcome {
    /// The code is gone from the process.
    Unmapped,
    /// The library is still mapped (the OS kept it, or it was leaked because plugin code may
    /// still be running); it is inert and never reused.
    Retained,
}

/// Declared resources, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// Logical table names.
    pub tables: Vec<String>,
    /// Logical topic names.
    pub topics: Vec<String>,
    /// Logical bucket names.
    pub buckets: Vec<String>,
}

/// Per-plugin counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    /// `execute` calls (dependency calls included).
    pub executes: u64,
    /// Calls running on the instance now (what an unload drains), route requests included.
    pub in_flight: u64,
    /// Calls that failed, panicked or timed out.
    pub execute_errors: u64,
    /// Events handled.
    pub events_delivered: u64,
    /// Events whose handler failed or panicked.
    pub events_failed: u64,
    /// Events dropped because the mailbox stayed full.
    pub events_dropped: u64,
    /// Table accesses refused (by the host's check or by the database).
    pub tables_denied: u64,
    /// Topic accesses refused.
    pub topics_denied: u64,
    /// Bucket accesses refused.
    pub buckets_denied: u64,
    /// Topic records produced (delivered to the backend).
    pub messages_produced: u64,
    /// Topic messages handled.
    pub messages_consumed: u64,
    /// Topic messages whose handler failed every attempt (skipped).
    pub messages_failed: u64,
}

/// Physical names of a plugin's resources, by logical name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Physical {
    /// Logical table → physical table.
    pub tables: std::collections::BTreeMap<String, String>,
    /// Logical topic → physical topic.
    pub topics: std::collections::BTreeMap<String, String>,
    /// Logical bucket → physical location.
    pub buckets: std::collections::BTreeMap<String, String>,
}

/// What the operator set for a plugin: its configuration and resource overrides. Kept by name,
/// across unloads, for the next load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PluginSettings {
    /// Configuration passed to the plugin (validated against its manifest's JSON Schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Resource overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
    /// Threads of the pool that runs a concurrent plugin's functions
    /// ([`PluginSettings::THREADS`], default [`PluginSettings::DEFAULT_THREADS`]); ignored for an
    /// exclusive plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl PluginSettings {
    /// Pool size of a concurrent plugin when the operator sets none.
    pub const DEFAULT_THREADS: usize = 4;
    /// Pool sizes the operator may set.
    pub const THREADS: std::ops::RangeInclusive<usize> = 1..=64;

    /// Settings with a config and overrides.
    pub fn new(config: Option<serde_json::Value>, overrides: Option<Overrides>) -> Self {
        Self {
            config,
            overrides,
            threads: None,
        }
    }

    /// Sets the pool size of a concurrent plugin (checked when the plugin is loaded).
    #[must_use]
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }

    /// The pool size to use: the operator's, or the default.
    ///
    /// # Errors
    /// `invalid_config` (key `threads`) when it is outside [`PluginSettings::THREADS`].
    pub fn pool_threads(&self) -> crate::error::Result<usize> {
        let threads = self.threads.unwrap_or(Self::DEFAULT_THREADS);
        if Self::THREADS.contains(&threads) {
            Ok(threads)
        } else {
            Err(crate::error::Error::InvalidConfig {
                key: "threads".into(),
                message: format!(
                    "{threads} threads; a plugin's pool has {} to {} threads",
                    Self::THREADS.start(),
                    Self::THREADS.end()
                ),
            })
        }
    }
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// The typed functions it offers (name, summary, input and output schema).
    pub functions: Vec<crate::manifest::FunctionSpec>,
    /// The HTTP routes it serves on the application listener.
    pub routes: Vec<crate::routes::RouteSpec>,
    /// The job kinds it declares (the queue that runs them is not built yet).
    pub jobs: Vec<crate::jobs::JobSpec>,
    /// The schedules it declares.
    pub schedules: Vec<crate::jobs::ScheduleSpec>,
    /// Lifecycle state.
    pub state: PluginState,
    /// ABI version it was built for, `major.minor`.
    pub api_version: String,
    /// The file it was loaded from (not the shadow copy).
    pub path: PathBuf,
    /// Names of its dependencies.
    pub dependencies: Vec<String>,
    /// Names of loaded plugins that depend on it.
    pub dependents: Vec<String>,
    /// Resources it may use: its declaration with the operator's overrides applied.
    pub resources: Resources,
    /// Resources its manifest declares.
    pub declared: Resources,
    /// Where its resources live.
    pub physical: Physical,
    /// The operator's overrides, if any.
    pub overrides: Option<Overrides>,
    /// Its configuration, if any.
    pub config: Option<serde_json::Value>,
    /// Load time, RFC 3339 UTC.
    pub loaded_at: String,
    /// Instance generation: unique per load or reload.
    pub generation: u64,
    /// The error that put it in the failed state.
    pub error: Option<String>,
    /// Counters.
    pub stats: PluginStats,
}

/// What the application listener needs to dispatch a request to a plugin: its state and
/// generation at the time of the look-up, and the routes of that instance, compiled. Cheap to
/// get (a reference count, no copy of the manifest): see
/// [`PluginManager::routes`](crate::PluginManager::routes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginRoutes {
    /// Lifecycle state when looked up.
    pub state: PluginState,
    /// Instance generation.
    pub generation: u64,
    /// The instance's routes (none for a plugin that failed).
    pub table: std::sync::Arc<crate::routes::RouteTable>,
}

/// Result of an unload.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct UnloadReport {
    /// Plugins unloaded, in the order they were unloaded (dependents first).
    pub unloaded: Vec<String>,
    /// What happened to each library.
    pub outcome: BTreeMap<String, UnloadOutcome>,
}

/// A plugin file that could not be loaded.
#[derive(Debug, Clone, Serialize)]
pub struct FailedLoad {
    /// The file.
    pub path: PathBuf,
    /// The plugin name, when the manifest could be read.
    pub name: Option<String>,
    /// Stable error code.
    pub code: crate::error::ErrorCode,
    /// The full error message.
    pub error: String,
}

/// A plugin not attempted because a dependency failed.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedLoad {
    /// The file.
    pub path: PathBuf,
    /// The plugin name.
    pub name: String,
    /// The dependency that failed or was skipped.
    pub because: String,
}

/// Result of loading a directory.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct DirectoryReport {
    /// Plugins loaded, in load order.
    pub loaded: Vec<String>,
    /// Files that failed, with the reason.
    pub failed: Vec<FailedLoad>,
    /// Plugins skipped because a dependency failed.
    pub skipped: Vec<SkippedLoad>,
}

/// Kinds of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LifecycleKind {
    /// A plugin was loaded and initialised.
    Loaded,
    /// A plugin was unloaded.
    Unloaded,
    /// A plugin was replaced by a new instance.
    Reloaded,
    /// A plugin failed to load, or failed or hung in a hook.
    Failed,
    /// A plugin was disabled (its `disable` hook succeeded).
    Disabled,
    /// A disabled plugin was enabled again (its `enable` hook succeeded).
    Enabled,
}

impl LifecycleKind {
    /// The bus event name: `plugin:loaded`, `plugin:unloaded`, `plugin:reloaded`,
    /// `plugin:failed`, `plugin:disabled`, `plugin:enabled`.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Loaded => "plugin:loaded",
            Self::Unloaded => "plugin:unloaded",
            Self::Reloaded => "plugin:reloaded",
            Self::Failed => "plugin:failed",
            Self::Disabled => "plugin:disabled",
            Self::Enabled => "plugin:enabled",
        }
    }
}

/// A lifecycle event, published on the bus under [`LifecycleKind::event_name`] with this value
/// as JSON payload.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LifecycleEvent {
    /// What happened.
    pub kind: LifecycleKind,
    /// Plugin name.
    pub name: String,
    /// Plugin version, when known.
    pub version: Option<String>,
    /// Instance generation, when an instance existed.
    pub generation: Option<u64>,
    /// Unload outcome, for `unloaded`.
    pub outcome: Option<UnloadOutcome>,
    /// Error code and message, for `failed`.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::PluginState;

    #[test]
    fn every_state_round_trips_through_its_byte_and_no_other_byte_is_a_state() {
        let all = [
            PluginState::Loading,
            PluginState::Active,
            PluginState::Disabled,
            PluginState::Stopping,
            PluginState::Failed,
            PluginState::Unloaded,
            PluginState::Retained,
        ];
        for s in all {
            assert_eq!(PluginState::from_byte(s.as_byte()), Some(s));
        }
        let states = (0..=u8::MAX)
            .filter(|b| PluginState::from_byte(*b).is_some())
            .count();
        assert_eq!(states, all.len());
    }
}
