//! `plugin-host`: loads native plugins (`cdylib` crates built against `plugin-api`) at runtime,
//! and unloads and reloads them without a restart.
//!
//! The host reads a plugin's manifest from the file before running any of its code, opens a
//! private shadow copy on the plugin's own thread, orders plugins by their dependencies, and
//! gives each a context: an event bus scoped to it and handles to its declared dependencies only.
//! See `docs/architecture.md` for the invariants that make unloading safe.
//!
//! ```no_run
//! use plugin_host::{ManagerConfig, PluginManager};
//! let manager = PluginManager::new(ManagerConfig::default())?;
//! let report = manager.load_dir("plugins")?;
//! println!("loaded {:?}, failed {}", report.loaded, report.failed.len());
//! # Ok::<(), plugin_host::Error>(())
//! ```

mod bus;
mod config;
mod error;
mod graph;
pub mod jobs;
mod loader;
mod manager;
mod manifest;
pub mod metrics;
mod resources;
mod routes;
mod state;
mod watch;

pub use bus::{
    BusEvent, BusStats, EventBus, HOST_NAMESPACE, HostHandler, Pattern, is_host_event,
    validate_event_name,
};
pub use config::{
    AppSection, BackendsSection, BucketsConfig, BucketsSection, HostConfig, JobStoreConfig,
    JobsConfig, JobsSection, LimitsSection, LogFormat, LogSection, ManagerConfig, PluginSection,
    PluginsSection, S3Config, S3Credentials, TablesConfig, TablesSection, TimeoutsSection,
    TopicsConfig, TopicsSection,
};
pub use error::{BackendKind, Change, Error, ErrorCode, Operation, Result, ResultLimit};
pub use loader::{
    DEFAULT_MAX_PLUGIN_BYTES, Inspection, accepted_abi, check_path, inspect, inspect_with_limit,
};
pub use manager::{
    CommitGate, DirectoryReport, FailedLoad, LifecycleEvent, LifecycleKind, Physical, PluginInfo,
    PluginManager, PluginRoutes, PluginSettings, PluginState, PluginStats, Resources, SkippedLoad,
    UnloadOutcome, UnloadReport,
};
pub use manifest::{DependencySpec, FunctionSpec, PluginManifest, validate_name};
pub use resources::buckets::DEFAULT_CONTENT_TYPE;
pub use resources::{DeniedTable, EffectiveResources, Overrides};
pub use routes::{
    METHODS, RouteAuth, RouteMatch, RouteSpec, RouteTable, find as find_route, percent_decode,
};
pub use state::{DataDirLock, DesiredPlugin, DesiredSet, StateStore};
pub use watch::{
    Board as WatchBoard, FileStatus, FolderWatcher, WatchOptions, WatchStatus, WatchedFile,
};

/// Hooks for the workspace's benches and tests. Not a stable API.
#[cfg(feature = "__private")]
#[doc(hidden)]
pub mod __private {
    use std::path::Path;
    use std::time::Duration;

    /// One read of a plugin file held by [`pause_read`] until this is released or dropped.
    #[derive(Debug)]
    pub struct ReadPause {
        id: u64,
    }

    /// Holds the read of the plugin file at `path` (compared as given: pass the absolute path
    /// the host reads) that comes after `skip` other reads of it, at the moment a slow disk
    /// would block: after the file was opened and checked, before its bytes are read. Every
    /// other read of the file goes on.
    pub fn pause_read(path: &Path, skip: usize) -> ReadPause {
        ReadPause {
            id: crate::loader::read_pause::add(path, skip),
        }
    }

    impl ReadPause {
        /// Waits until the chosen read is held; `false` if it was not within `timeout`.
        pub fn wait_held(&self, timeout: Duration) -> bool {
            crate::loader::read_pause::wait_holding(self.id, timeout)
        }

        /// Lets the held read go on (if none is held yet, none will be).
        pub fn release(self) {}
    }

    impl Drop for ReadPause {
        fn drop(&mut self) {
            crate::loader::read_pause::release(self.id);
        }
    }

    /// Plans a dependency chain of `n` plugins (each depending on the previous one, listed in
    /// reverse order) with the same graph code a directory load uses; returns how many it
    /// ordered.
    pub fn plan_chain(n: usize) -> usize {
        let version = semver::Version::new(1, 0, 0);
        let names: Vec<String> = (0..n).map(|i| format!("link-{i}")).collect();
        let deps: Vec<Vec<crate::DependencySpec>> = (0..n)
            .map(|i| {
                if i == 0 {
                    Vec::new()
                } else {
                    vec![crate::DependencySpec {
                        name: names[i - 1].clone(),
                        version: semver::VersionReq::STAR,
                    }]
                }
            })
            .collect();
        let nodes: Vec<crate::graph::Node<'_>> = (0..n)
            .rev()
            .map(|i| crate::graph::Node {
                name: &names[i],
                version: &version,
                dependencies: &deps[i],
            })
            .collect();
        crate::graph::plan(&nodes, &|_| None).order.len()
    }
}
