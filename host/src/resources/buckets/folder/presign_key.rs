//! The folder backend's signing key for presigned links: 32 random bytes in
//! `<dir>/.presign-key` (mode 0600), created once, so that links survive a restart. Deleting
//! the file revokes every link issued so far; anyone who can read it can forge links.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::nofollow::{io_kind_missing, nofollow, open_read, read_limited};
use crate::error::{Error, Result};

/// The key file's name, in the buckets folder.
pub(super) const FILE: &str = ".presign-key";

/// Reads `<root>/.presign-key`, or creates it: 32 bytes from the OS's random source, written in
/// `staging` with mode 0600 and published with `link`, so that two hosts starting at once agree
/// on one key and nobody ever reads a part-written one.
///
/// # Errors
/// `internal` for an I/O error; `invalid_config` for a key file that is not 32 bytes.
pub(super) fn load_or_create(root: &Path, staging: &Path) -> Result<[u8; 32]> {
    let path = root.join(FILE);
    if let Some(secret) = read_secret(&path)? {
        return Ok(secret);
    }
    let mut secret = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    let tmp = staging.join(format!("presign-key-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = nofollow(&mut options)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&secret).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(target: "buckets", path = %path.display(), "created the presign key");
            Ok(secret)
        }
        // Another host created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_secret(&path)?.ok_or_else(|| Error::Internal {
                message: "the presign key vanished while it was created".into(),
            })
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn read_secret(path: &Path) -> Result<Option<[u8; 32]>> {
    let file = match open_read(path) {
        Ok(f) => f,
        Err(e) if io_kind_missing(&e) => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = file.metadata()
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(target: "buckets", path = %path.display(), "the presign key is readable by others; anyone who reads it can forge links (chmod 600)");
        }
    }
    let bytes = read_limited(file, 64).map_err(|e| Error::io(path, e))?;
    let secret: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidConfig {
        key: "backends.buckets".into(),
        message: format!(
            "`{}` must hold exactly 32 bytes; delete it to create a new one (this revokes every presigned link)",
            path.display()
        ),
    })?;
    Ok(Some(secret))
}
