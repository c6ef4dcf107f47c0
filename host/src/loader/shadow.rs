//! The folder of one manager's shadow copies, and the clean-up of the folders that hosts which
//! died without unloading (SIGKILL, a crash, a power cut) left behind.
//!
//! Each manager owns `ROOT/plugin-host-<pid>-<n>/` (ROOT: `/dev/shm` when present) and the file
//! `ROOT/plugin-host-<pid>-<n>.lock` beside it, which the manager holds locked (`flock`) for as
//! long as it lives. The lock is taken before the folder is created, so a folder always has a
//! live lock or a dead owner, and the folder itself holds nothing but shadow copies.
//!
//! When a manager claims its folder it first sweeps the root: a `plugin-host-<pid>-*` folder (and
//! its lock file) is removed only if its pid is not a running process (checked on Linux through
//! `/proc`) **and** its lock is not held by anyone. A live host's copies are therefore never
//! removed, even by a host in another pid namespace sharing the root (its lock is held); folders
//! of versions that kept no lock are removed once their pid is gone.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

const PREFIX: &str = "plugin-host-";
const LOCK_SUFFIX: &str = ".lock";

/// The lock file of a shadow folder: `<folder>.lock`, beside it.
fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(LOCK_SUFFIX);
    PathBuf::from(name)
}

/// The held lock of a shadow folder; dropping it releases the lock and removes the lock file.
#[derive(Debug)]
pub(crate) struct ShadowLock {
    _file: File,
    path: PathBuf,
}

impl Drop for ShadowLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sweeps what dead hosts left in `root`, then creates and locks this manager's folder there.
/// Returns the folder and its lock (held until dropped).
///
/// # Errors
/// `internal` when the folder cannot be created or locked.
pub(crate) fn claim_shadow_dir(root: &Path) -> Result<(PathBuf, ShadowLock)> {
    static DIRS: AtomicU64 = AtomicU64::new(0);
    let removed = sweep(root);
    if removed > 0 {
        tracing::info!(target: "loader", root = %root.display(), removed, "removed shadow folders of hosts that are gone");
    }
    let pid = std::process::id();
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("{PREFIX}{pid}-{n}"));
    let lock_file = lock_path(&dir);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&lock_file)
        .map_err(|e| Error::io(&lock_file, e))?;
    lock.try_lock().map_err(|e| Error::Internal {
        message: format!("cannot lock {}: {e}", lock_file.display()),
    })?;
    let lock = ShadowLock {
        _file: lock,
        path: lock_file,
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok((dir, lock))
}

/// The pid in a shadow folder's name, `plugin-host-<pid>-<n>` (or its lock file's).
fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Whether `pid` may be a running process. Without `/proc`, every pid counts as running and
/// only the lock decides.
fn may_be_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Whether someone holds the folder's lock. A folder without a lock file is held only if its
/// pid may be running (the caller checked that already).
fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::open(lock_path(dir)) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// Removes the shadow folders of hosts that are gone; returns how many.
fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(pid_of) else {
            continue;
        };
        // Never follow a link planted in a shared folder; only real folders are ours (their
        // lock files go with them).
        if pid == own || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let proc_says_gone = !may_be_running(pid);
        let has_lock = lock_path(&dir).exists();
        // Gone for sure: the pid does not run and nobody holds the lock. Without `/proc`, a
        // folder is removed only when it has a lock file that nobody holds.
        let gone = if proc_says_gone {
            !is_locked(&dir)
        } else {
            !Path::new("/proc/self").exists() && has_lock && !is_locked(&dir)
        };
        if gone && std::fs::remove_dir_all(&dir).is_ok() {
            let _ = std::fs::remove_file(lock_path(&dir));
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_read_from_the_folder_name() {
        assert_eq!(pid_of("plugin-host-123-0"), Some(123));
        assert_eq!(pid_of("plugin-host-x-0"), None);
        assert_eq!(pid_of("other-123-0"), None);
    }

    #[test]
    fn sweep_removes_dead_hosts_folders_and_keeps_live_ones() {
        let root =
            std::env::temp_dir().join(format!("plugin-host-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // A pid far above any pid_max: never a running process.
        let dead = root.join("plugin-host-4999999-0");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("libx-4999999-0.so"), b"x").unwrap();
        // Dead pid, but its lock is held (a host in another pid namespace): kept.
        let held = root.join("plugin-host-4999998-0");
        std::fs::create_dir_all(&held).unwrap();
        let lock = File::create(lock_path(&held)).unwrap();
        lock.lock().unwrap();
        // Ours, claimed now: kept.
        let (mine, mine_lock) = claim_shadow_dir(&root).unwrap();
        assert!(!dead.exists(), "a dead host's folder is removed");
        assert!(held.exists(), "a folder whose lock is held is kept");
        assert!(mine.exists());
        assert!(is_locked(&mine));
        drop(lock);
        assert_eq!(sweep(&root), 1, "once its lock is free, it goes");
        assert!(!held.exists());
        assert!(!lock_path(&held).exists(), "its lock file goes with it");
        assert!(mine.exists(), "our own folder is never swept");
        drop(mine_lock);
        assert!(
            !lock_path(&mine).exists(),
            "the lock file goes with its lock"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
