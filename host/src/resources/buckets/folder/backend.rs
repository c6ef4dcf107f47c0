//! The folder backend itself: objects as files, the checks of the wall (see the module above),
//! listing, presigning.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::nofollow::{
    Found, descend, io_kind_missing, is_link_error, open_read, probe, read_limited, real_dir,
    real_path, stage,
};
use super::{meta, presign_key};
use crate::error::{Error, Result};
use crate::resources::buckets::token::{self, Claim};
use crate::resources::buckets::{BucketBackend, Object, Page, key};
use crate::resources::naming;

const STAGING: &str = ".staging";
/// The longest file name common file systems accept.
const NAME_MAX: usize = 255;
/// Staging files older than this at start are leftovers of a crash.
const STALE_STAGING: Duration = Duration::from_secs(3600);
const LOCKS: usize = 64;

/// Buckets in a local folder.
pub(crate) struct FolderBuckets {
    /// The folder, canonical.
    root: PathBuf,
    public_url: Option<String>,
    secret: [u8; 32],
    /// Writes and deletes of one key take the lock its hash picks.
    locks: Vec<Mutex<()>>,
}

impl std::fmt::Debug for FolderBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderBuckets")
            .field("root", &self.root)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A refusal to go through a symbolic link (logged: someone planted it).
pub(super) fn link_refused(key: &str, at: &Path) -> Error {
    tracing::warn!(target: "buckets", path = %at.display(), "refused a symbolic link in the buckets folder");
    Error::InvalidKey {
        key: key.chars().take(120).collect(),
        reason:
            "its path in the buckets folder goes through a symbolic link, which is never followed"
                .into(),
    }
}

fn invalid_key(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKey {
        key: key.chars().take(120).collect(),
        reason: reason.into(),
    }
}

fn internal(message: impl Into<String>) -> Error {
    Error::Internal {
        message: message.into(),
    }
}

/// A physical location (`<plugin>/<bucket>/`) as folder names.
fn location_segments(location: &str) -> Result<Vec<&str>> {
    let trimmed = location.strip_suffix('/').unwrap_or(location);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let ok = segments.len() == 2
        && segments
            .iter()
            .all(|s| s.as_bytes().first().is_some_and(u8::is_ascii_lowercase))
        && key::validate(trimmed).is_ok();
    if ok {
        Ok(segments)
    } else {
        Err(internal(format!("invalid bucket location {location:?}")))
    }
}

/// A valid key's segments, each short enough to be a file name.
fn key_segments(key: &str) -> Result<Vec<&str>> {
    let segments: Vec<&str> = key.split('/').collect();
    if let Some(long) = segments.iter().find(|s| s.len() > NAME_MAX) {
        return Err(invalid_key(
            key,
            format!(
                "a segment is {} bytes; the folder backend stores at most {NAME_MAX} per segment",
                long.len()
            ),
        ));
    }
    Ok(segments)
}

impl FolderBuckets {
    /// Opens (creating) the folder, its staging and metadata folders and its presign key, and
    /// removes staging files a crash left behind.
    ///
    /// # Errors
    /// `internal` for an I/O error, `backend_unavailable` when a host folder is a link or a
    /// file, `invalid_config` for a corrupt presign key.
    pub(crate) fn open(dir: &Path, public_url: Option<String>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let root = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        real_dir(&root, STAGING)?;
        real_dir(&root, meta::DIR)?;
        clean_staging(&root.join(STAGING));
        let secret = presign_key::load_or_create(&root, &root.join(STAGING))?;
        Ok(Self {
            root,
            public_url,
            secret,
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
        })
    }

    fn lock(&self, location: &str, key: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        (location, key).hash(&mut h);
        let i = usize::try_from(h.finish() % LOCKS as u64).unwrap_or(0);
        self.locks[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket_root(&self, loc: &[&str]) -> PathBuf {
        loc.iter().fold(self.root.clone(), |p, s| p.join(s))
    }

    /// The folder holding `key`'s object (`None`: missing and not created).
    fn object_dir(&self, loc: &[&str], key: &str, create: bool) -> Result<Option<PathBuf>> {
        let segments = key_segments(key)?;
        let dirs = &segments[..segments.len() - 1];
        let all: Vec<&str> = loc.iter().chain(dirs).copied().collect();
        match descend(&self.root, &all, create)? {
            Found::Dir(p) => Ok(Some(p)),
            Found::Missing => Ok(None),
            Found::Link(p) => Err(link_refused(key, &p)),
            Found::File(p) if create => Err(invalid_key(
                key,
                format!(
                    "`{}` is an object, and the folder backend cannot store keys below an object",
                    p.strip_prefix(self.bucket_root(loc))
                        .unwrap_or(&p)
                        .display()
                ),
            )),
            Found::File(_) => Ok(None),
        }
    }

    /// The object's file path, after checking every folder on the way.
    fn object_path(&self, loc: &[&str], key: &str, create: bool) -> Result<Option<PathBuf>> {
        let name = key.rsplit('/').next().unwrap_or(key);
        Ok(self.object_dir(loc, key, create)?.map(|d| d.join(name)))
    }

    /// Fails unless the open `file` (at `path`) really lies inside `within`.
    fn verify_inside(&self, file: &File, path: &Path, within: &Path, key: &str) -> Result<()> {
        let real = real_path(file).or_else(|| {
            let parent = fs::canonicalize(path.parent()?).ok()?;
            Some(parent.join(path.file_name()?))
        });
        match real {
            Some(real) if real.starts_with(within) => Ok(()),
            _ => Err(link_refused(key, path)),
        }
    }

    /// Removes the folders a delete left empty, up to (not including) the bucket folder.
    fn prune(&self, object: &Path, bucket_root: &Path) {
        let mut dir = object.parent();
        while let Some(d) = dir {
            if d == bucket_root || !d.starts_with(bucket_root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

impl BucketBackend for FolderBuckets {
    fn describe(&self, location: &str) -> String {
        self.root.join(location).display().to_string()
    }

    fn put(
        &self,
        location: &str,
        key: &str,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<()> {
        let loc = location_segments(location)?;
        let bucket_root = self.bucket_root(&loc);
        let _guard = self.lock(location, key);
        let tmp = stage(&self.root.join(STAGING), bytes)?;
        let result = (|| {
            // A concurrent delete may prune a folder between our checks and the rename: retry.
            for _ in 0..3 {
                let path = self
                    .object_path(&loc, key, true)?
                    .ok_or_else(|| internal("bucket folder vanished"))?;
                match probe(&path)? {
                    Found::Link(p) => return Err(link_refused(key, &p)),
                    Found::Dir(_) => {
                        return Err(invalid_key(
                            key,
                            "it names a folder of other keys (`key/...`), and the folder backend cannot store both",
                        ));
                    }
                    Found::File(_) | Found::Missing => {}
                }
                let parent = path.parent().unwrap_or(&path);
                let real = fs::canonicalize(parent).map_err(|e| Error::io(parent, e))?;
                if !real.starts_with(&bucket_root) {
                    return Err(link_refused(key, parent));
                }
                match fs::rename(&tmp, &path) {
                    Ok(()) => return Ok(()),
                    Err(e) if io_kind_missing(&e) => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            Err(internal(format!(
                "cannot store {key:?}: its folder keeps vanishing"
            )))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        meta::write(
            &self.root,
            &self.root.join(STAGING),
            &loc,
            key,
            content_type,
        )
    }

    fn get(&self, location: &str, key: &str) -> Result<Option<Object>> {
        let loc = location_segments(location)?;
        let Some(path) = self.object_path(&loc, key, false)? else {
            return Ok(None);
        };
        let file = match open_read(&path) {
            Ok(f) => f,
            Err(e) if io_kind_missing(&e) => return Ok(None),
            Err(e) if is_link_error(&e) => return Err(link_refused(key, &path)),
            Err(e) => return Err(Error::io(&path, e)),
        };
        self.verify_inside(&file, &path, &self.bucket_root(&loc), key)?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let bytes = read_limited(file, u64::MAX).map_err(|e| Error::io(&path, e))?;
        let content_type = meta::read(&self.root, &loc, key)?;
        Ok(Some(Object {
            bytes,
            content_type,
        }))
    }

    fn delete(&self, location: &str, key: &str) -> Result<bool> {
        let loc = location_segments(location)?;
        let _guard = self.lock(location, key);
        let Some(path) = self.object_path(&loc, key, false)? else {
            return Ok(false);
        };
        let deleted = match probe(&path)? {
            Found::Link(p) => return Err(link_refused(key, &p)),
            Found::Dir(_) | Found::Missing => false,
            Found::File(_) => match fs::remove_file(&path) {
                Ok(()) => true,
                Err(e) if io_kind_missing(&e) => false,
                Err(e) => return Err(Error::io(&path, e)),
            },
        };
        meta::remove(&self.root, &loc, key)?;
        if deleted {
            self.prune(&path, &self.bucket_root(&loc));
        }
        Ok(deleted)
    }

    fn exists(&self, location: &str, key: &str) -> Result<bool> {
        let loc = location_segments(location)?;
        let Some(path) = self.object_path(&loc, key, false)? else {
            return Ok(false);
        };
        match probe(&path)? {
            Found::Link(p) => Err(link_refused(key, &p)),
            Found::File(_) => Ok(true),
            Found::Dir(_) | Found::Missing => Ok(false),
        }
    }

    fn list(
        &self,
        location: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let loc = location_segments(location)?;
        // Start at the prefix's deepest folder: `a/b/c` lists below `a/b`.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut segments = loc.clone();
        if !dir_part.is_empty() {
            segments.extend(dir_part.split('/'));
        }
        let start = match descend(&self.root, &segments, false)? {
            Found::Dir(d) => d,
            // Nothing there, or a link (never followed, never listed).
            _ => return Ok(Page::default()),
        };
        let rel = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let mut keys = Vec::new();
        let mut stack = vec![(start, rel)];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if io_kind_missing(&e) => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue; // not UTF-8: not a key this API could have written
                };
                // `file_type` does not follow links: a link is neither a folder nor a file here.
                let file_type = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                let key = format!("{rel}{name}");
                if key.len() > key::MAX_KEY_BYTES {
                    continue;
                }
                if file_type.is_dir() {
                    let sub = format!("{key}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        stack.push((entry.path(), sub));
                    }
                } else if file_type.is_file()
                    && key.starts_with(prefix)
                    && after.is_none_or(|a| key.as_str() > a)
                    && key::validate(&key).is_ok()
                {
                    keys.push(key);
                }
            }
        }
        keys.sort_unstable();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next_page_token = if more { keys.last().cloned() } else { None };
        Ok(Page {
            keys,
            next_page_token,
        })
    }

    fn presign_get(&self, location: &str, key: &str, expires: Duration) -> Result<String> {
        let public = self
            .public_url
            .as_deref()
            .ok_or_else(|| Error::InvalidConfig {
                key: "backends.buckets.public_url".into(),
                message: "presigned links need the URL clients reach this host at".into(),
            })?;
        let loc = location_segments(location)?;
        let claim = Claim {
            plugin: loc[0].to_owned(),
            bucket: loc[1].to_owned(),
            key: key.to_owned(),
            expires: now_secs().saturating_add(expires.as_secs()),
        };
        let token = token::sign(&self.secret, &claim)?;
        Ok(format!(
            "{}/presigned/{token}",
            public.trim_end_matches('/')
        ))
    }

    fn presigned_get(&self, token: &str) -> Result<Object> {
        let claim = token::verify(&self.secret, token, now_secs())?;
        // The claim is ours (signed), but it is checked like any input all the same.
        let refused = || Error::PresignedUrlInvalid {
            reason: "the token names an invalid object".into(),
        };
        if !plugin_api::valid_name(&claim.plugin) {
            return Err(refused());
        }
        let location = naming::s3_prefix(&claim.plugin, &claim.bucket).map_err(|_| refused())?;
        key::validate(&claim.key).map_err(|_| refused())?;
        self.get(&location, &claim.key)?
            .ok_or(Error::ObjectNotFound {
                bucket: claim.bucket,
                key: claim.key,
            })
    }

    fn check(&self) -> Result<()> {
        for dir in [self.root.clone(), self.root.join(STAGING)] {
            match probe(&dir)? {
                Found::Dir(_) => {}
                _ => {
                    return Err(Error::BackendUnavailable {
                        kind: crate::BackendKind::Buckets,
                        message: format!("`{}` is not a folder", dir.display()),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Removes staging files old enough to be a crash's leftovers (a fresh one may be another
/// writer's).
fn clean_staging(staging: &Path) {
    let Ok(entries) = fs::read_dir(staging) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_STAGING);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::buckets::TestDir;

    fn backend(dir: &Path) -> FolderBuckets {
        FolderBuckets::open(dir, Some("http://h".into())).unwrap()
    }

    const LOC: &str = "demo/files/";

    #[test]
    fn put_get_list_delete() {
        let dir = TestDir::new();
        let b = backend(dir.path());
        b.put(LOC, "a/b/c.txt", b"abc", Some("text/plain")).unwrap();
        b.put(LOC, "a/x", b"x", None).unwrap();
        b.put(LOC, "a.b", b"", None).unwrap();
        assert_eq!(
            fs::read(dir.path().join("demo/files/a/b/c.txt")).unwrap(),
            b"abc"
        );
        let o = b.get(LOC, "a/b/c.txt").unwrap().unwrap();
        assert_eq!(o.content_type.as_deref(), Some("text/plain"));
        assert_eq!(b.get(LOC, "a/x").unwrap().unwrap().content_type, None);
        assert_eq!(b.get(LOC, "nope").unwrap(), None);
        assert_eq!(b.get(LOC, "a").unwrap(), None, "a folder is not an object");
        let page = b.list(LOC, "", None, 10).unwrap();
        assert_eq!(page.keys, ["a.b", "a/b/c.txt", "a/x"]);
        assert_eq!(page.next_page_token, None);
        let page = b.list(LOC, "a/", None, 1).unwrap();
        assert_eq!(page.keys, ["a/b/c.txt"]);
        let page = b
            .list(LOC, "a/", page.next_page_token.as_deref(), 1)
            .unwrap();
        assert_eq!(
            (page.keys, page.next_page_token),
            (vec!["a/x".to_owned()], None)
        );
        assert_eq!(b.list(LOC, "a/b/c", None, 10).unwrap().keys, ["a/b/c.txt"]);
        assert!(b.list(LOC, "zzz/", None, 10).unwrap().keys.is_empty());
        assert!(b.delete(LOC, "a/b/c.txt").unwrap());
        assert!(!b.delete(LOC, "a/b/c.txt").unwrap());
        assert!(!dir.path().join("demo/files/a/b").exists(), "pruned");
        assert!(dir.path().join("demo/files/a").is_dir(), "still holds a/x");
        let e = b.put(LOC, "a/x/y", b"", None).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_key");
        let e = b.put(LOC, "a", b"", None).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_key");
        let e = b.put(LOC, &"s".repeat(300), b"", None).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_key");
        assert!(
            fs::read_dir(dir.path().join(STAGING))
                .unwrap()
                .next()
                .is_none(),
            "no staging leftovers"
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_are_never_followed() {
        let dir = TestDir::new();
        let outside = TestDir::new();
        let target = outside.path().join("secret.txt");
        fs::write(&target, b"secret").unwrap();
        let b = backend(dir.path());
        b.put(LOC, "ok", b"1", None).unwrap();
        let bucket = dir.path().join("demo/files");
        std::os::unix::fs::symlink(&target, bucket.join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), bucket.join("dir-link")).unwrap();
        for key in ["file-link", "dir-link/secret.txt", "dir-link/new"] {
            assert_eq!(b.get(LOC, key).unwrap_err().code().as_str(), "invalid_key");
            assert_eq!(
                b.put(LOC, key, b"x", None).unwrap_err().code().as_str(),
                "invalid_key"
            );
            assert_eq!(
                b.exists(LOC, key).unwrap_err().code().as_str(),
                "invalid_key"
            );
            assert_eq!(
                b.delete(LOC, key).unwrap_err().code().as_str(),
                "invalid_key"
            );
        }
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        assert!(!outside.path().join("new").exists());
        assert_eq!(b.list(LOC, "", None, 10).unwrap().keys, ["ok"]);
        assert!(b.list(LOC, "dir-link/", None, 10).unwrap().keys.is_empty());
    }

    #[test]
    fn the_presign_key_survives_a_restart() {
        let dir = TestDir::new();
        let b = backend(dir.path());
        b.put(LOC, "k", b"v", Some("text/plain")).unwrap();
        let url = b.presign_get(LOC, "k", Duration::from_secs(60)).unwrap();
        let token = url.strip_prefix("http://h/presigned/").unwrap();
        drop(b);
        let b = backend(dir.path());
        assert_eq!(b.presigned_get(token).unwrap().bytes, b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(presign_key::FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        b.delete(LOC, "k").unwrap();
        assert_eq!(
            b.presigned_get(token).unwrap_err().code().as_str(),
            "not_found"
        );
        let other = TestDir::new();
        assert_eq!(
            backend(other.path())
                .presigned_get(token)
                .unwrap_err()
                .code()
                .as_str(),
            "presigned_url_invalid",
            "another folder's key does not verify it"
        );
        fs::write(dir.path().join(presign_key::FILE), b"short").unwrap();
        assert_eq!(
            FolderBuckets::open(dir.path(), None)
                .unwrap_err()
                .code()
                .as_str(),
            "invalid_config"
        );
    }
}
