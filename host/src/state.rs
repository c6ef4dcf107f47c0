//! The desired plugin set (what is loaded, from which file, enabled or not, and every operator
//! setting), persisted as JSON in the data folder after each change, and restored in dependency
//! order at the next start. A plugin that can no longer load is reported and does not stop the
//! others. [`DataDirLock`] keeps a data folder to one host process at a time.
//!
//! Paths in the state file are absolute (the loader makes every plugin path absolute), so a
//! restart from another working directory finds the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manager::{DirectoryReport, PluginManager, PluginSettings, PluginState};

/// Version of the state file format.
const FORMAT: u32 = 1;

/// One plugin of the desired set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DesiredPlugin {
    /// Plugin name.
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Whether it was enabled.
    pub enabled: bool,
}

/// The persisted set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DesiredSet {
    /// File format version.
    pub format: u32,
    /// Loaded plugins, in dependency order.
    pub plugins: Vec<DesiredPlugin>,
    /// Operator settings by plugin name, loaded or not.
    pub settings: BTreeMap<String, PluginSettings>,
}

/// An exclusive hold on a data folder: `DATA_DIR/.lock`, locked with `flock` and holding the
/// holder's pid, for as long as this value lives. The operating system releases it when the
/// process ends, however it ends, so a killed host never leaves a stale lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created if missing).
    ///
    /// # Errors
    /// `data_dir_in_use` naming the holder's pid when another process holds it; `internal` on
    /// an I/O error.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        use std::io::{Read as _, Seek as _, Write as _};
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let path = data_dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::DataDirInUse {
                    path: data_dir.to_owned(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where the desired set lives: `DATA_DIR/state.json`.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    write: Mutex<()>,
}

impl StateStore {
    /// The store in `data_dir` (created if missing).
    ///
    /// # Errors
    /// `internal` when the folder cannot be created.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        Ok(Self {
            path: data_dir.join("state.json"),
            write: Mutex::new(()),
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The desired set the manager holds now.
    pub fn snapshot(manager: &PluginManager) -> DesiredSet {
        let plugins = manager
            .list()
            .into_iter()
            .filter(|p| matches!(p.state, PluginState::Active | PluginState::Disabled))
            .map(|p| DesiredPlugin {
                enabled: p.state == PluginState::Active,
                name: p.name,
                path: p.path,
            })
            .collect();
        DesiredSet {
            format: FORMAT,
            plugins,
            settings: manager.all_settings(),
        }
    }

    /// Writes the manager's current desired set atomically (temporary file, then rename).
    ///
    /// # Errors
    /// `internal` on an I/O error.
    pub fn save(&self, manager: &PluginManager) -> Result<()> {
        let _one_writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let set = Self::snapshot(manager);
        let json = serde_json::to_vec_pretty(&set).map_err(|e| Error::Internal {
            message: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// Reads the persisted set, if there is one.
    ///
    /// # Errors
    /// `invalid_config` when the file exists but is not a state file of this format.
    pub fn read(&self) -> Result<Option<DesiredSet>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let set: DesiredSet = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidConfig {
            key: self.path.display().to_string(),
            message: format!("not a plugin-host state file: {e}"),
        })?;
        if set.format != FORMAT {
            return Err(Error::InvalidConfig {
                key: self.path.display().to_string(),
                message: format!(
                    "state format {} is not supported (expected {FORMAT})",
                    set.format
                ),
            });
        }
        Ok(Some(set))
    }

    /// Restores the persisted set into `manager`: settings first, then every plugin in
    /// dependency order, then disabled ones are disabled again. Returns the load report.
    ///
    /// # Errors
    /// Only when the state file is unreadable; per-plugin failures are in the report.
    pub fn restore(&self, manager: &PluginManager) -> Result<DirectoryReport> {
        let Some(set) = self.read()? else {
            return Ok(DirectoryReport::default());
        };
        for (name, settings) in set.settings {
            if let Err(e) = manager.set_settings(&name, Some(settings)) {
                tracing::warn!(target: "state", plugin = %name, error = %e.chain(), "stored settings dropped");
            }
        }
        let report = manager.load_files(set.plugins.iter().map(|p| p.path.clone()).collect());
        for p in set.plugins.iter().filter(|p| !p.enabled) {
            if let Err(e) = manager.disable(&p.name) {
                tracing::warn!(target: "state", plugin = %p.name, error = %e.chain(), "could not disable again");
            }
        }
        for f in &report.failed {
            tracing::warn!(target: "state", path = %f.path.display(), code = %f.code, error = %f.error, "plugin not restored");
        }
        Ok(report)
    }
}
