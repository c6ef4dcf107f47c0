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
pub mod cli;
mod config;
mod error;
mod graph;
mod loader;
mod manager;
mod manifest;

pub use bus::{BusEvent, BusStats, EventBus, HostHandler, validate_event_name};
pub use config::ManagerConfig;
pub use error::{Error, ErrorCode, Result};
pub use loader::{Inspection, accepted_abi, inspect};
pub use manager::{
    DirectoryReport, FailedLoad, LifecycleEvent, LifecycleKind, PluginInfo, PluginManager,
    PluginState, PluginStats, Resources, SkippedLoad, UnloadOutcome, UnloadReport,
};
pub use manifest::{DependencySpec, PluginManifest, validate_name};
