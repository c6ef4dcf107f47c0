//! Plugin lifecycle: a state machine per plugin (`loading → active ⇄ disabled → stopping →
//! unloaded`, plus `failed` and `retained`), load/unload/reload transactions, directory loads,
//! and the worker threads that are the only place plugin code runs.
//!
//! Transitions are serialised by one lock (a second request for the same plugin waits for the
//! first instead of running twice). Plugin files are read before that lock is taken, never
//! under it, so a slow file holds up only the operation reading it. Calls (`execute`,
//! dependency calls, event deliveries) never take that lock: they find the plugin's current
//! instance and queue work in its mailbox.

mod core;
// Issue 11 (loading files): commit gates, so that a request answered with an error never
// takes effect later. The transitions call `gate::check` / `gate::commit` at their commit points.
mod gate;
mod services;
mod transitions;
mod types;
mod worker;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

pub use gate::CommitGate;
pub(crate) use transitions::is_library_name;
pub use types::{
    DirectoryReport, FailedLoad, LifecycleEvent, LifecycleKind, Physical, PluginInfo, PluginRoutes,
    PluginSettings, PluginState, PluginStats, Resources, SkippedLoad, UnloadOutcome, UnloadReport,
};

use crate::bus::EventBus;
use crate::config::ManagerConfig;
use crate::error::{Error, Result};

/// Loads, runs, reloads and unloads plugins. Unloads everything, dependents first, on drop.
///
/// Its methods block: they wait for plugins (a load waits for `initialize`) and for backends.
/// From async code call them through `tokio::task::spawn_blocking`, as the admin API does; never
/// on an async worker thread.
///
/// ```no_run
/// use plugin_host::{ManagerConfig, PluginManager};
/// let manager = PluginManager::new(ManagerConfig::default())?;
/// manager.load("target/debug/libplugin_hello.so")?;
/// let out = manager.execute("hello", &serde_json::json!({"name": "ada"}))?;
/// assert_eq!(out["greeting"], "hello, ada");
/// # Ok::<(), plugin_host::Error>(())
/// ```
#[derive(Debug)]
pub struct PluginManager {
    inner: Arc<core::Inner>,
}

impl PluginManager {
    /// A manager with no plugins.
    ///
    /// # Errors
    /// `internal` when the shadow-copy folder cannot be created.
    pub fn new(config: ManagerConfig) -> Result<Self> {
        Ok(Self {
            inner: core::Inner::new(config)?,
        })
    }

    /// Loads one plugin file: validate without running it, check dependencies, open a fresh
    /// shadow copy on the plugin's own thread, initialize. A transaction: on failure nothing of
    /// the plugin stays registered.
    ///
    /// # Errors
    /// `file_not_found`, `invalid_plugin`, `incompatible_abi`, `unsupported_panic_strategy`,
    /// `invalid_name`, `already_loaded`, `dependency_not_found`, `dependency_version_mismatch`,
    /// `self_dependency`, `circular_dependency`, `initialize_failed`, `timeout`.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<PluginInfo> {
        self.inner.load(path.as_ref(), None)
    }

    /// Loads one plugin file with operator settings (config and overrides). The settings are
    /// kept for the plugin's name only if the load succeeds.
    ///
    /// # Errors
    /// As [`PluginManager::load`], plus `invalid_plugin_config` and `invalid_overrides`.
    pub fn load_with(
        &self,
        path: impl AsRef<Path>,
        settings: PluginSettings,
    ) -> Result<PluginInfo> {
        self.inner.load(path.as_ref(), Some(settings))
    }

    /// The operator settings stored for `name` (loaded or not).
    pub fn settings(&self, name: &str) -> Option<PluginSettings> {
        self.inner
            .has_settings(name)
            .then(|| self.inner.settings_for(name))
    }

    /// Replaces (or with `None` clears) the operator settings of `name`. A loaded plugin is
    /// reloaded atomically with them; if that fails it keeps running with the old settings.
    /// Settings of a plugin that is not loaded are kept for its next load.
    ///
    /// # Errors
    /// `invalid_overrides`, `invalid_plugin_config`, or any reload error.
    pub fn set_settings(
        &self,
        name: &str,
        settings: Option<PluginSettings>,
    ) -> Result<Option<PluginSettings>> {
        self.update_settings(name, |_| Ok(settings))
    }

    /// Changes the operator settings of `name` in one read-modify-write: `change` receives the
    /// stored settings (`None` when there are none) and returns the new ones (`None` clears
    /// them). The read, the change, the store and the reload of a loaded plugin happen in one
    /// transition, so concurrent updates (say, one of the config and one of the overrides)
    /// never lose each other's change. If the reload fails, the old settings stay and the
    /// plugin keeps running with them.
    ///
    /// The plugin's file is read before the transition lock is taken (and read again if the
    /// plugin changed meanwhile); `change` runs under that lock: it may read the manager (`get`,
    /// `settings`, `list`) but must not start a transition (load, reload, set settings...).
    ///
    /// # Errors
    /// Whatever `change` returns; `invalid_overrides`, `invalid_plugin_config`, any reload
    /// error, `concurrent_change` when other operations changed the plugin during each of 5
    /// reads of its file.
    pub fn update_settings(
        &self,
        name: &str,
        change: impl FnOnce(Option<PluginSettings>) -> Result<Option<PluginSettings>>,
    ) -> Result<Option<PluginSettings>> {
        crate::manifest::validate_name(name)?;
        self.inner.update_settings(name, change)
    }

    /// Runs `f` with a commit gate: every lifecycle change `f` asks for takes effect only if
    /// `gate` was not abandoned first, and once one took effect, `gate.abandon()` returns
    /// `false`. This is how the admin API makes sure that a request answered `504 timeout`
    /// never takes effect later (see [`CommitGate`]).
    pub fn gated<T>(&self, gate: &Arc<CommitGate>, f: impl FnOnce(&Self) -> T) -> T {
        gate::with_gate(gate, || f(self))
    }

    /// Largest plugin file this manager reads, in bytes.
    pub fn max_plugin_bytes(&self) -> u64 {
        self.inner.config.max_plugin_bytes
    }

    /// Lifecycle counters and latency histograms.
    pub fn metrics(&self) -> &crate::metrics::ManagerMetrics {
        &self.inner.metrics
    }

    /// Unloads a plugin (and with `cascade`, its dependents first).
    ///
    /// # Errors
    /// `not_found`; `has_dependents` without `cascade`.
    pub fn unload(&self, name: &str, cascade: bool) -> Result<UnloadReport> {
        self.inner.unload(name, cascade)
    }

    /// Atomically reloads a plugin from its file, then its dependents in dependency order. If the
    /// new version fails at any step, the old one keeps running.
    ///
    /// The files (the plugin's, then each dependent's) are read outside the manager's transition
    /// lock; bytes read before another operation changed the plugin are never put in (the file
    /// is read again).
    ///
    /// # Errors
    /// `not_found`, any load error of the new file, `dependency_version_mismatch` when a
    /// dependent does not accept the new version, `concurrent_change` when other operations
    /// changed the plugin during each of 5 reads of its file.
    pub fn reload(&self, name: &str) -> Result<PluginInfo> {
        self.inner.reload(name)
    }

    /// Enables a disabled plugin.
    ///
    /// # Errors
    /// `not_found`, `plugin_not_active`, `plugin_failed` when its hook fails.
    pub fn enable(&self, name: &str) -> Result<PluginInfo> {
        self.inner.set_enabled(name, true)
    }

    /// Disables a plugin: it stays loaded, `execute` is refused.
    ///
    /// # Errors
    /// `not_found`, `plugin_not_active`, `plugin_failed` when its hook fails.
    pub fn disable(&self, name: &str) -> Result<PluginInfo> {
        self.inner.set_enabled(name, false)
    }

    /// Calls a plugin's `execute` with JSON.
    ///
    /// # Errors
    /// `not_found`, `plugin_disabled`, `plugin_not_active`, `plugin_failed` (error or panic),
    /// `timeout`.
    pub fn execute(&self, name: &str, input: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(input).map_err(|e| Error::BadRequest {
            message: e.to_string(),
        })?;
        let out = self.execute_bytes(name, bytes)?;
        serde_json::from_slice(&out).map_err(|e| Error::Internal {
            message: format!("plugin `{name}` returned invalid JSON: {e}"),
        })
    }

    /// Calls a plugin's `execute` with JSON bytes, returning its JSON bytes.
    ///
    /// # Errors
    /// As [`PluginManager::execute`].
    pub fn execute_bytes(&self, name: &str, input: Vec<u8>) -> Result<Vec<u8>> {
        self.inner.execute(name, worker::Invocation::execute(input))
    }

    /// Calls a plugin's named function `function` with JSON, after checking the input against
    /// the function's declared input schema. Counted with `execute` in the plugin's stats.
    ///
    /// # Errors
    /// `function_not_found` when the plugin declares no such function, `invalid_input` when the
    /// input fails its schema, and the errors of [`PluginManager::execute`] (a typed input the
    /// plugin cannot deserialise is `plugin_failed` with plugin code `bad_request`).
    pub fn call(&self, name: &str, function: &str, input: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(input).map_err(|e| Error::BadRequest {
            message: e.to_string(),
        })?;
        let out = self.call_bytes(name, function, bytes)?;
        serde_json::from_slice(&out).map_err(|e| Error::Internal {
            message: format!("plugin `{name}` returned invalid JSON: {e}"),
        })
    }

    /// [`PluginManager::call`] with JSON bytes, returning JSON bytes.
    ///
    /// # Errors
    /// As [`PluginManager::call`].
    pub fn call_bytes(&self, name: &str, function: &str, input: Vec<u8>) -> Result<Vec<u8>> {
        self.call_bytes_within(name, function, input, None)
    }

    /// [`PluginManager::call_bytes`] with its own time limit (`None`: the execute timeout).
    ///
    /// # Errors
    /// As [`PluginManager::call`]; `timeout` names `limit` when the call took longer.
    pub fn call_bytes_within(
        &self,
        name: &str,
        function: &str,
        input: Vec<u8>,
        limit: Option<std::time::Duration>,
    ) -> Result<Vec<u8>> {
        let call = worker::Invocation {
            function: Some(function.to_owned()),
            input,
            timeout: limit,
        };
        self.inner.execute(name, call)
    }

    /// Loads every plugin library in a folder, in dependency order.
    ///
    /// # Errors
    /// `bad_request` when the folder does not exist; per-plugin failures are in the report.
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> Result<DirectoryReport> {
        self.inner.load_dir(dir.as_ref())
    }

    /// Loads the given plugin files in dependency order, with a per-plugin report.
    pub fn load_files(&self, files: Vec<std::path::PathBuf>) -> DirectoryReport {
        self.inner.load_files(files)
    }

    /// Every stored operator setting, by plugin name (loaded or not).
    pub fn all_settings(&self) -> std::collections::BTreeMap<String, PluginSettings> {
        self.inner.all_settings()
    }

    /// Every plugin, in dependency order, then failed ones.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.inner.list()
    }

    /// One plugin.
    ///
    /// # Errors
    /// `not_found`.
    pub fn get(&self, name: &str) -> Result<PluginInfo> {
        self.inner.get(name)
    }

    /// A plugin's state, generation and compiled routes, for dispatching a request: a look-up
    /// in the registry and a reference count, where [`PluginManager::get`] copies the whole
    /// plugin object. The routes live with the instance, so the table is swapped atomically
    /// with it: a load registers it, an unload removes it, a reload's swap replaces it in one
    /// write (the new instance is active before the old one retires, so a request never finds
    /// the plugin without an active instance during a reload).
    ///
    /// # Errors
    /// `not_found`.
    pub fn routes(&self, name: &str) -> Result<PluginRoutes> {
        self.inner.routes(name)
    }

    /// The event bus: lifecycle events (`plugin:loaded`, `plugin:unloaded`, `plugin:reloaded`,
    /// `plugin:failed`, `plugin:disabled`, `plugin:enabled`) and plugin events. Host code can emit and subscribe here.
    pub fn bus(&self) -> &Arc<EventBus> {
        &self.inner.bus
    }

    /// The durable job queue.
    ///
    /// # Errors
    /// `backend_unavailable` when no job store is configured.
    pub fn jobs(&self) -> Result<&Arc<crate::jobs::JobQueue>> {
        self.inner
            .jobs
            .as_ref()
            .ok_or_else(|| Error::BackendUnavailable {
                kind: crate::BackendKind::Tables,
                message: "no job queue is configured (it needs a tables backend: SQLite or \
                      PostgreSQL)"
                    .into(),
            })
    }

    /// Stops the job queue (waits for running attempts up to the cleanup timeout), then unloads
    /// every plugin, dependents first. Also done on drop.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Number of live subscriptions of the current instance of `name` (0 when not loaded).
    pub fn subscription_count(&self, name: &str) -> usize {
        self.inner
            .slot(name)
            .map(|s| self.inner.bus.count_owner(&s.owner()))
            .unwrap_or(0)
    }

    /// Whether each configured backend answers: `("tables", Ok(()))`, ...
    pub fn backend_status(&self) -> Vec<(&'static str, Result<()>)> {
        let mut out = Vec::new();
        if let Some(t) = &self.inner.tables {
            out.push(("tables", t.check()));
        }
        if let Some(t) = &self.inner.topics {
            out.push(("topics", t.check()));
        }
        if let Some(b) = &self.inner.buckets {
            out.push(("buckets", b.check()));
        }
        out
    }

    /// Serves a presigned GET link (`GET /presigned/{token}`): the content type and bytes of the
    /// object the token names. The token is the only credential: the buckets backend checks its
    /// signature and expiry, not the plugin's current state.
    ///
    /// # Errors
    /// `presigned_url_invalid` (malformed, tampered or expired), `not_found` (the object was
    /// deleted since), `backend_unavailable` (no buckets backend).
    pub fn presigned_get(&self, token: &str) -> Result<(String, Vec<u8>)> {
        let backend = self
            .inner
            .buckets
            .as_ref()
            .ok_or_else(|| Error::BackendUnavailable {
                kind: crate::BackendKind::Buckets,
                message: "this host has no buckets backend configured".into(),
            })?;
        let object = backend.presigned_get(token)?;
        let content_type = object
            .content_type
            .unwrap_or_else(|| crate::resources::buckets::DEFAULT_CONTENT_TYPE.to_owned());
        Ok((content_type, object.bytes))
    }

    /// The folder holding this manager's shadow copies.
    pub fn shadow_dir(&self) -> &Path {
        &self.inner.shadow_dir
    }
}

impl Drop for PluginManager {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}
