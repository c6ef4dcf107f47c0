//! Reading a plugin file so that no path can hang, exhaust or crash the host.
//!
//! The rules, each a typed error (`docs/error-codes.md`):
//! - the path is checked before any system call: no NUL byte, no component longer than
//!   [`MAX_COMPONENT_BYTES`], not longer than [`MAX_PATH_BYTES`] (`invalid_path`);
//! - anything but a regular file (directory, FIFO, device, socket) is refused before it is
//!   opened (`stat`, following symbolic links: a link to a plugin is legitimate), so no device
//!   node is ever opened; the file is then opened with `O_NONBLOCK` (opening a FIFO never waits
//!   for a writer) and `O_NOCTTY`, and what was opened is checked again on the descriptor
//!   (`fstat`), so a path swapped after the first check changes nothing (`invalid_path`);
//! - a file larger than the configured limit is refused before it is read (`file_too_large`);
//! - pseudo-files (`/proc`, `/sys`) report a size that is not their content's (0 for
//!   `/proc/self/mem`, 4096 for sysfs attributes): a file whose size is 0, or whose content does
//!   not end exactly at the size `fstat` reported, is refused (`invalid_path`). At most
//!   `size + 1` bytes are ever read, so the limit holds whatever the file claims.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::Path;

use crate::error::{Error, Result};

/// Default limit on a plugin file's size: 256 MiB (`[limits] max_plugin_bytes`).
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// Longest path component accepted, in bytes (`NAME_MAX` of Linux and macOS file systems).
pub(crate) const MAX_COMPONENT_BYTES: usize = 255;

/// Longest path accepted, in bytes (`PATH_MAX` of Linux, terminating NUL excluded).
pub(crate) const MAX_PATH_BYTES: usize = 4095;

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a path's bytes before it reaches a system call: no NUL, no over-long component or
/// path. (The path shown in an error is cut to its first 200 characters.)
///
/// # Errors
/// `invalid_path`.
pub fn check_path(path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    let shown = || -> std::path::PathBuf {
        let lossy = path.to_string_lossy();
        if lossy.chars().count() > 200 {
            format!("{}…", lossy.chars().take(200).collect::<String>()).into()
        } else {
            path.to_owned()
        }
    };
    if bytes.is_empty() {
        return Err(invalid(path, "the path is empty"));
    }
    if bytes.contains(&0) {
        return Err(invalid(&shown(), "the path contains a NUL byte"));
    }
    if bytes.len() > MAX_PATH_BYTES {
        return Err(invalid(
            &shown(),
            format!(
                "the path is {} bytes long; the limit is {MAX_PATH_BYTES}",
                bytes.len()
            ),
        ));
    }
    if let Some(long) = path
        .components()
        .map(|c| c.as_os_str().len())
        .find(|&n| n > MAX_COMPONENT_BYTES)
    {
        return Err(invalid(
            &shown(),
            format!(
                "a component of the path is {long} bytes long; the limit is {MAX_COMPONENT_BYTES}"
            ),
        ));
    }
    Ok(())
}

/// The host's error for an I/O error on a path the operator gave.
pub(crate) fn path_error(path: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound | K::NotADirectory => Error::FileNotFound {
            path: path.to_owned(),
        },
        K::PermissionDenied => invalid(path, "permission denied"),
        K::InvalidFilename => invalid(path, "the file system refuses this name (too long?)"),
        K::InvalidInput => invalid(path, e.to_string()),
        _ if is_link_loop(&e) => invalid(path, "too many levels of symbolic links"),
        _ => Error::io(path, e),
    }
}

fn is_link_loop(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// What a file is, for an error message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Opens `path` without blocking (a FIFO does not wait for a writer) and checks, on the open
/// descriptor, that it is a regular file.
///
/// The path is `stat`ed first and anything but a regular file is refused before it is opened:
/// opening some device nodes has effects of its own (opening `/dev/watchdog` arms the watchdog,
/// a tape device may rewind). The check on the descriptor after the open still decides, so a path
/// swapped in between changes nothing.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    check_path(path)?;
    let before = std::fs::metadata(path).map_err(|e| path_error(path, e))?;
    if !before.is_file() {
        return Err(invalid(
            path,
            format!("it is {}, not a regular file", kind_of(&before)),
        ));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(|e| path_error(path, e))?;
    let meta = file.metadata().map_err(|e| path_error(path, e))?;
    if !meta.is_file() {
        return Err(invalid(
            path,
            format!("it is {}, not a regular file", kind_of(&meta)),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a whole plugin file under the rules of this module.
///
/// # Errors
/// `invalid_path`, `file_not_found`, `file_too_large`, `internal` for other I/O errors.
pub(crate) fn read_plugin_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    if size > max_bytes {
        return Err(Error::FileTooLarge {
            path: path.to_owned(),
            size,
            limit: max_bytes,
        });
    }
    if size == 0 {
        return Err(invalid(
            path,
            "the file reports a size of 0 bytes: it is empty, or a pseudo-file (/proc, /sys) \
             whose content is generated",
        ));
    }
    let capacity = usize::try_from(size).map_err(|_| Error::FileTooLarge {
        path: path.to_owned(),
        size,
        limit: max_bytes,
    })?;
    #[cfg(feature = "__private")]
    read_pause::before_read(path);
    let mut bytes = Vec::with_capacity(capacity);
    // One byte more than announced: a file that grew, or a pseudo-file, is caught, and the
    // read stays bounded by the limit whatever the file claims.
    file.take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| path_error(path, e))?;
    if bytes.len() as u64 != size {
        return Err(invalid(
            path,
            format!(
                "its size is {size} bytes but {} were read: it changed while being read, or it \
                 is a pseudo-file (/proc, /sys)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Test hook (feature `__private`, see `crate::__private::pause_read`): holds one chosen read of
/// a file between its checks and the reading of its bytes, the moment a slow disk or network
/// file system would block, so tests can prove what a file read holds up and what it does not.
#[cfg(feature = "__private")]
pub(crate) mod read_pause {
    use std::path::{Path, PathBuf};
    use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
    use std::time::{Duration, Instant};

    struct Entry {
        id: u64,
        path: PathBuf,
        /// Reads of `path` still to let through before the one held.
        skip: usize,
        /// Whether the held read has arrived.
        holding: bool,
    }

    struct Registry {
        next: u64,
        entries: Vec<Entry>,
    }

    static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        next: 0,
        entries: Vec::new(),
    });
    static CHANGED: Condvar = Condvar::new();

    fn registry() -> MutexGuard<'static, Registry> {
        REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by every read, after the file's checks: holds the read chosen by an entry until
    /// the entry is released.
    pub(crate) fn before_read(path: &Path) {
        let mut reg = registry();
        let Some(entry) = reg
            .entries
            .iter_mut()
            .find(|e| e.path == path && !e.holding)
        else {
            return;
        };
        if entry.skip > 0 {
            entry.skip -= 1;
            return;
        }
        entry.holding = true;
        let id = entry.id;
        CHANGED.notify_all();
        while reg.entries.iter().any(|e| e.id == id) {
            reg = CHANGED.wait(reg).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Holds the read of `path` that comes after `skip` others; returns the entry's id.
    pub(crate) fn add(path: &Path, skip: usize) -> u64 {
        let mut reg = registry();
        reg.next += 1;
        let id = reg.next;
        reg.entries.push(Entry {
            id,
            path: path.to_owned(),
            skip,
            holding: false,
        });
        id
    }

    /// Waits until the entry's read is held; `false` if it was not within `timeout`.
    pub(crate) fn wait_holding(id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut reg = registry();
        loop {
            match reg.entries.iter().find(|e| e.id == id) {
                Some(e) if e.holding => return true,
                Some(_) => {}
                None => return false,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            reg = CHANGED
                .wait_timeout(reg, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Removes the entry: its held read (if any) goes on.
    pub(crate) fn release(id: u64) {
        registry().entries.retain(|e| e.id != id);
        CHANGED.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Vec<u8>>) -> &'static str {
        r.map(|_| ()).unwrap_err().code().as_str()
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = std::env::temp_dir();
        assert_eq!(code(read_plugin_file(&dir, 1 << 20)), "invalid_path");
        assert_eq!(
            code(read_plugin_file(Path::new("/"), 1 << 20)),
            "invalid_path"
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                code(read_plugin_file(Path::new("/dev/zero"), 1 << 20)),
                "invalid_path"
            );
            assert_eq!(
                code(read_plugin_file(Path::new("/proc/self/mem"), 1 << 20)),
                "invalid_path"
            );
            assert_eq!(
                code(read_plugin_file(Path::new("/proc/self/status"), 1 << 20)),
                "invalid_path"
            );
        }
    }

    #[test]
    fn refuses_bad_paths_before_any_system_call() {
        assert_eq!(
            code(read_plugin_file(Path::new("/tmp/a\0b.so"), 1 << 20)),
            "invalid_path"
        );
        let long = format!("/tmp/{}.so", "x".repeat(300));
        assert_eq!(
            code(read_plugin_file(Path::new(&long), 1 << 20)),
            "invalid_path"
        );
        let deep = "/a".repeat(3000);
        assert_eq!(
            code(read_plugin_file(Path::new(&deep), 1 << 20)),
            "invalid_path"
        );
        assert_eq!(
            code(read_plugin_file(Path::new(""), 1 << 20)),
            "invalid_path"
        );
        assert_eq!(
            code(read_plugin_file(
                Path::new("/nonexistent/plugin.so"),
                1 << 20
            )),
            "file_not_found"
        );
    }

    #[test]
    fn enforces_the_size_limit_and_reads_exact_files() {
        let dir = tempdir();
        let path = dir.join("f.so");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        assert_eq!(code(read_plugin_file(&path, 4095)), "file_too_large");
        assert_eq!(read_plugin_file(&path, 4096).unwrap().len(), 4096);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(code(read_plugin_file(&path, 4096)), "invalid_path");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("plugin-host-file-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
