//! The watcher's public surface: options, the status of each file, and [`FolderWatcher`], which
//! owns the `notify` watch and the thread of [`Worker`]. See the module docs in `mod.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use notify::{RecursiveMode, Watcher as _};
use serde::Serialize;

use super::worker::Worker;
use crate::config::PluginsSection;
use crate::error::{Error, Result};
use crate::manager::{PluginManager, is_library_name};
use crate::state::StateStore;

/// Default quiet time after the last event of a burst.
const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Default time a file written in place must stay unchanged.
const DEFAULT_SETTLE: Duration = Duration::from_millis(100);
/// Suffixes of temporary files of common tools (editors, downloaders, `install`-style copies).
const TEMPORARY_SUFFIXES: [&str; 5] = ["~", ".tmp", ".swp", ".part", ".crdownload"];

/// How a [`FolderWatcher`] behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Quiet time after the last file event before the folder is looked at (default 50 ms).
    pub debounce: Duration,
    /// How long a file written in place must keep its size and mtime before it is loaded
    /// (default 100 ms). A file renamed into the folder is complete at once.
    pub settle: Duration,
    /// When a removed library has dependents: unload them too (`true`), or refuse and report
    /// (`false`, the default).
    pub cascade_on_remove: bool,
    /// Where the desired plugin set is persisted after every change the watcher applies.
    pub store: Option<Arc<StateStore>>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            settle: DEFAULT_SETTLE,
            cascade_on_remove: false,
            store: None,
        }
    }
}

impl WatchOptions {
    /// The options of a `[plugins]` config section (`debounce_ms`, `settle_ms`,
    /// `cascade_on_remove`).
    pub fn from_config(section: &PluginsSection) -> Self {
        Self {
            debounce: section
                .debounce_ms
                .map_or(DEFAULT_DEBOUNCE, Duration::from_millis),
            settle: section
                .settle_ms
                .map_or(DEFAULT_SETTLE, Duration::from_millis),
            cascade_on_remove: section.cascade_on_remove,
            store: None,
        }
    }

    /// Sets [`WatchOptions::debounce`].
    pub fn with_debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Sets [`WatchOptions::settle`].
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets [`WatchOptions::cascade_on_remove`].
    pub fn with_cascade_on_remove(mut self, cascade: bool) -> Self {
        self.cascade_on_remove = cascade;
        self
    }

    /// Sets [`WatchOptions::store`].
    pub fn with_store(mut self, store: Arc<StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A burst of events longer than this is looked at anyway, so that one file written
    /// forever cannot hold back the others.
    pub(super) fn max_burst(&self) -> Duration {
        (self.debounce * 20).max(Duration::from_secs(1))
    }
}

/// What became of a watched file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileStatus {
    /// Its plugin runs this file's content.
    Loaded,
    /// The last attempt failed; `code` and `error` say why. A plugin that ran before keeps
    /// running.
    Failed,
    /// Seen, but not complete yet (still being written).
    Pending,
}

/// One library file of the watched folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WatchedFile {
    /// The file.
    pub path: PathBuf,
    /// The plugin it holds or held, when known.
    pub plugin: Option<String>,
    /// What became of it.
    pub status: FileStatus,
    /// The full error message, for `failed`.
    pub error: Option<String>,
    /// The stable error code (docs/error-codes.md), for `failed`.
    pub code: Option<crate::error::ErrorCode>,
    /// 64-bit content hash (hex) of the content last acted on.
    pub hash: Option<String>,
}

/// The watched folder and the state of each of its library files.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WatchStatus {
    /// The folder.
    pub dir: PathBuf,
    /// Its library files (and removed ones whose plugin could not be unloaded), by path.
    pub files: Vec<WatchedFile>,
}

/// The published state of a watcher, shared with the admin API. Its lock is held only to copy.
#[derive(Debug)]
pub struct Board {
    pub(super) dir: PathBuf,
    pub(super) files: Mutex<Vec<WatchedFile>>,
}

impl Board {
    /// A copy of the watcher's current view of the folder.
    pub fn status(&self) -> WatchStatus {
        WatchStatus {
            dir: self.dir.clone(),
            files: self
                .files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// What the watcher thread receives: file events from `notify`, or the order to stop.
#[derive(Debug)]
pub(super) enum Msg {
    Event(notify::Result<notify::Event>),
    Stop,
}

/// Watches a plugins folder and applies its changes to a [`PluginManager`] until stopped
/// (or dropped).
///
/// ```no_run
/// use std::sync::Arc;
/// use plugin_host::{FolderWatcher, ManagerConfig, PluginManager, WatchOptions};
/// let manager = Arc::new(PluginManager::new(ManagerConfig::default())?);
/// let watcher = FolderWatcher::start(Arc::clone(&manager), "plugins".as_ref(), WatchOptions::default())?;
/// for file in watcher.status().files {
///     println!("{} {:?} {:?}", file.path.display(), file.status, file.code);
/// }
/// watcher.stop();
/// # Ok::<(), plugin_host::Error>(())
/// ```
#[derive(Debug)]
pub struct FolderWatcher {
    board: Arc<Board>,
    notify: Option<notify::RecommendedWatcher>,
    control: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl FolderWatcher {
    /// Starts watching `dir`. Library files already there that the manager has not loaded from
    /// it are loaded first (in dependency order), so that [`FolderWatcher::status`] reports every
    /// file; from then on changes are applied as they come, on the watcher's own thread.
    ///
    /// # Errors
    /// `bad_request` when `dir` is not a folder; `internal` when the OS refuses to watch it (for
    /// example the inotify watch limit) or the thread cannot start.
    pub fn start(manager: Arc<PluginManager>, dir: &Path, options: WatchOptions) -> Result<Self> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::BadRequest {
                    message: format!("`{}` is not a directory", dir.display()),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BadRequest {
                    message: format!("directory `{}` does not exist", dir.display()),
                });
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let events = tx.clone();
        let mut notify = notify::recommended_watcher(move |e| {
            let _ = events.send(Msg::Event(e));
        })
        .map_err(|e| notify_error(dir, &e))?;
        // Watch first, then scan: a change made during the scan is still seen afterwards.
        notify
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| notify_error(dir, &e))?;
        let board = Arc::new(Board {
            dir: dir.to_owned(),
            files: Mutex::new(Vec::new()),
        });
        let mut worker = Worker::new(manager, dir, options, Arc::clone(&board));
        worker.initial_scan();
        let thread = std::thread::Builder::new()
            .name("plugin-host-watch".into())
            .spawn(move || worker.run(&rx))
            .map_err(|e| Error::Internal {
                message: format!("cannot spawn the folder watcher thread: {e}"),
            })?;
        tracing::info!(target: "watch", dir = %dir.display(), "watching the plugins folder");
        Ok(Self {
            board,
            notify: Some(notify),
            control: Some(tx),
            thread: Some(thread),
        })
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.board.dir
    }

    /// Every library file of the folder and what became of it.
    pub fn status(&self) -> WatchStatus {
        self.board.status()
    }

    /// Stops watching and waits for a change being applied to finish. Also done on drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// The watcher's published state, for a status endpoint.
    pub fn board(&self) -> Arc<Board> {
        Arc::clone(&self.board)
    }

    fn shutdown(&mut self) {
        drop(self.notify.take());
        if let Some(control) = self.control.take() {
            let _ = control.send(Msg::Stop);
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(target: "watch", dir = %self.board.dir.display(), "the folder watcher thread panicked");
        }
    }
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn notify_error(dir: &Path, e: &notify::Error) -> Error {
    Error::Internal {
        message: format!("cannot watch `{}`: {e}", dir.display()),
    }
}

/// Whether the watcher considers a file name: a plugin library (the same rule as a directory
/// load), and not a temporary file of a common tool.
pub(super) fn is_watched_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && !TEMPORARY_SUFFIXES.iter().any(|s| name.ends_with(s))
        && is_library_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn temporary_and_foreign_files_are_ignored() {
        let lib = |stem: &str| format!("{stem}{}", std::env::consts::DLL_SUFFIX);
        assert!(is_watched_name(&lib("libplugin_hello")));
        for name in [
            format!(".{}", lib("libplugin_hello")),
            format!("#{}#", lib("libplugin_hello")),
            format!("{}~", lib("libplugin_hello")),
            format!("{}.tmp", lib("libplugin_hello")),
            format!("{}.swp", lib("libplugin_hello")),
            format!("{}.part", lib("libplugin_hello")),
            format!("{}.crdownload", lib("libplugin_hello")),
            "libplugin_hello.tmp".to_owned(),
            "README.md".to_owned(),
        ] {
            assert!(!is_watched_name(&name), "{name} is ignored");
        }
    }

    #[test]
    fn options_follow_the_config_section() {
        let defaults = WatchOptions::from_config(&PluginsSection::default());
        assert_eq!(defaults.debounce, DEFAULT_DEBOUNCE);
        assert_eq!(defaults.settle, DEFAULT_SETTLE);
        assert!(!defaults.cascade_on_remove);
        let section = PluginsSection {
            debounce_ms: Some(5),
            settle_ms: Some(7),
            cascade_on_remove: true,
            ..PluginsSection::default()
        };
        let o = WatchOptions::from_config(&section);
        assert_eq!(o.debounce, Duration::from_millis(5));
        assert_eq!(o.settle, Duration::from_millis(7));
        assert!(o.cascade_on_remove);
        assert_eq!(o.max_burst(), Duration::from_secs(1));
    }

    #[test]
    fn starting_on_a_missing_folder_is_a_bad_request() {
        let manager =
            Arc::new(PluginManager::new(crate::config::ManagerConfig::default()).unwrap());
        let e = FolderWatcher::start(
            manager,
            Path::new("/nonexistent/plugin-host-watch"),
            WatchOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest);
    }
}
