//! File-system access below a trusted folder that never follows a symbolic link: each
//! component is looked at with `symlink_metadata` before it is used, files are opened with
//! `O_NOFOLLOW`, and an open file's real path can be read back to check where it really is. The
//! folder backend (`folder.rs`) builds its wall from these; they know nothing of buckets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a path turned out to be, found without following links.
pub(super) enum Found {
    Dir(PathBuf),
    File(PathBuf),
    Missing,
    Link(PathBuf),
}

pub(super) fn io_kind_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether an open failed because `O_NOFOLLOW` met a link.
pub(super) fn is_link_error(e: &io::Error) -> bool {
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

pub(super) fn nofollow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

pub(super) fn open_read(path: &Path) -> io::Result<File> {
    nofollow(OpenOptions::new().read(true)).open(path)
}

/// The real path of an open file, when the platform says (Linux: `/proc/self/fd`).
#[cfg(target_os = "linux")]
pub(super) fn real_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd as _;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
pub(super) fn real_path(_file: &File) -> Option<PathBuf> {
    None
}

/// What `path` is, without following a link.
pub(super) fn probe(path: &Path) -> Result<Found> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(Found::Link(path.to_owned())),
        Ok(m) if m.is_dir() => Ok(Found::Dir(path.to_owned())),
        Ok(_) => Ok(Found::File(path.to_owned())),
        Err(e) if io_kind_missing(&e) => Ok(Found::Missing),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Descends from `base` through `segments`, checking every component without following links,
/// creating missing folders when `create`. Stops at the first component that is not a folder.
pub(super) fn descend(base: &Path, segments: &[&str], create: bool) -> Result<Found> {
    let mut path = base.to_owned();
    for segment in segments {
        path.push(segment);
        loop {
            match probe(&path)? {
                Found::Dir(_) => break,
                Found::Missing if create => match fs::create_dir(&path) {
                    Ok(()) => break,
                    // Created meanwhile by another writer: look again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&path, e)),
                },
                other => return Ok(other),
            }
        }
    }
    Ok(Found::Dir(path))
}

/// A host-owned folder `<root>/<name>` that must be a real folder (created if missing).
pub(super) fn real_dir(root: &Path, name: &str) -> Result<()> {
    match descend(root, &[name], true)? {
        Found::Dir(_) => Ok(()),
        _ => Err(Error::BackendUnavailable {
            kind: crate::BackendKind::Buckets,
            message: format!(
                "`{}` must be a folder, not a file or a link",
                root.join(name).display()
            ),
        }),
    }
}

pub(super) fn read_limited(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    file.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Writes `bytes` to a new file in `dir` (never an existing file or a link), flushed to disk;
/// returns its path. The name is unique to this process and call.
pub(super) fn stage(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(
        "{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = nofollow(OpenOptions::new().write(true).create_new(true))
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_data()) {
        let _ = fs::remove_file(&path);
        return Err(Error::io(&path, e));
    }
    Ok(path)
}
