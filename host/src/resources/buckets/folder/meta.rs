//! Content types, stored beside the objects: `.meta/<plugin>/<bucket>/<hh>/<h>.json`, named by
//! the SHA-256 of the key (`<hh><h>`), holding `{"key", "content_type"}`. Outside every bucket
//! folder, so no key can collide with a metadata file and no listing meets one; the full key
//! inside means a file is only ever read back for its own key.
//!
//! An object stored without a content type has no metadata file. A missing, unreadable or
//! foreign file reads as "none" (the object is served as `application/octet-stream`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backend::link_refused;
use super::nofollow::{Found, descend, io_kind_missing, is_link_error, open_read, probe};
use super::nofollow::{read_limited, stage};
use crate::error::{Error, Result};

/// The metadata folder's name, in the buckets folder.
pub(super) const DIR: &str = ".meta";
/// A metadata file larger than this is not ours.
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    key: String,
    content_type: String,
}

/// The metadata file of `key` in the bucket at `loc` (`None`: its folder is missing and was not
/// created).
fn path(root: &Path, loc: &[&str], key: &str, create: bool) -> Result<Option<PathBuf>> {
    let hash: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (shard, rest) = hash.split_at(2);
    let segments: Vec<&str> = loc.iter().copied().chain([shard]).collect();
    match descend(&root.join(DIR), &segments, create)? {
        Found::Dir(d) => Ok(Some(d.join(format!("{rest}.json")))),
        Found::Link(p) => Err(link_refused(key, &p)),
        _ => Ok(None),
    }
}

/// Stores (or, for `None`, removes) `key`'s content type, atomically through `staging`.
pub(super) fn write(
    root: &Path,
    staging: &Path,
    loc: &[&str],
    key: &str,
    content_type: Option<&str>,
) -> Result<()> {
    let Some(content_type) = content_type else {
        return remove(root, loc, key);
    };
    let path = path(root, loc, key, true)?.ok_or_else(|| Error::Internal {
        message: "metadata folder vanished".into(),
    })?;
    if let Found::Link(p) = probe(&path)? {
        return Err(link_refused(key, &p));
    }
    let json = serde_json::to_vec(&Meta {
        key: key.to_owned(),
        content_type: content_type.to_owned(),
    })
    .map_err(|e| Error::Internal {
        message: format!("cannot serialise metadata: {e}"),
    })?;
    let tmp = stage(staging, &json)?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(&path, e)
    })
}

/// `key`'s content type, if one was stored.
pub(super) fn read(root: &Path, loc: &[&str], key: &str) -> Result<Option<String>> {
    let Some(path) = path(root, loc, key, false)? else {
        return Ok(None);
    };
    let file = match open_read(&path) {
        Ok(f) => f,
        Err(e) if io_kind_missing(&e) => return Ok(None),
        Err(e) if is_link_error(&e) => return Err(link_refused(key, &path)),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bytes = read_limited(file, MAX_BYTES).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_slice::<Meta>(&bytes)
        .ok()
        .filter(|m| m.key == key)
        .map(|m| m.content_type))
}

/// Removes `key`'s content type, if any.
pub(super) fn remove(root: &Path, loc: &[&str], key: &str) -> Result<()> {
    let Some(path) = path(root, loc, key, false)? else {
        return Ok(());
    };
    match fs::remove_file(&path) {
        Err(e) if !io_kind_missing(&e) => Err(Error::io(&path, e)),
        _ => Ok(()),
    }
}
