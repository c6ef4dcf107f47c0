//! The watched plugins folder: a library dropped into it is loaded, a replaced one is reloaded
//! atomically, a removed one is unloaded. Operators' guide: `docs/watch.md`.
//!
//! Events (from `notify`: inotify on Linux) only say *which* files to look at; what to do is
//! decided from the folder as it is once the burst is over. A file is acted on when it is
//! complete: renamed into place, or its size and mtime unchanged for the settle time. Several
//! files that become complete together are loaded as one set, in dependency order. A file whose
//! content hash equals the loaded version's is an identical rebuild, not a reload. Every outcome
//! is logged (target `watch`), published on the bus (`watch:loaded`, `watch:reloaded`,
//! `watch:unloaded`, `watch:unchanged`, `watch:failed`) and kept for [`FolderWatcher::status`]
//! (`GET /api/v1/watch`).
//!
//! The watcher's thread only waits, reads files and calls the [`PluginManager`]: plugin code runs
//! on the plugins' own threads, and a file that fails never disturbs the plugins that run. No lock
//! is held across a manager call. Started by `server` (or an embedder); this is the only module
//! that uses `notify`.
//!
//! `watcher.rs` holds the public surface (options, status, [`FolderWatcher`]); `worker.rs` the
//! watcher thread (debounce, completeness, applying a set of changes).

mod watcher;
mod worker;

pub use watcher::{Board, FileStatus, FolderWatcher, WatchOptions, WatchStatus, WatchedFile};
