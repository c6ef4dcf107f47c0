//! The folder backend (embedded default): every object is a plain file, so an operator can look
//! at, back up or serve the data with ordinary tools. Does I/O; decides nothing about access
//! (that is [`ScopedBuckets`](super::ScopedBuckets)'s job) but is the wall that keeps keys inside
//! their bucket folder.
//!
//! Layout under the configured folder (resolved once, at start; it may itself be a link):
//!
//! ```text
//! <plugin>/<bucket>/<key>          the objects, byte for byte
//! .meta/<plugin>/<bucket>/<hh>/<h>.json  content type of the key whose SHA-256 is <hh><h>
//! .staging/                        temporary files of writes in progress
//! .presign-key                     32 random bytes signing presigned links (mode 0600)
//! ```
//!
//! Plugin and bucket names start with a letter, so the dot-folders can never be a plugin's.
//! Metadata lives outside the bucket folders and is named by a hash of the key: no key can
//! collide with it, a listing never meets it, and key length does not limit its file name.
//!
//! The wall, beyond the key rules every backend applies:
//! - No symbolic link under the folder is ever followed. Each existing component of a path is
//!   checked with `symlink_metadata` before use (a link is refused with `invalid_key`, logged),
//!   files are opened with `O_NOFOLLOW`, and an opened file's real path (on Linux, from
//!   `/proc/self/fd`) must lie inside its bucket folder. Listings skip links without following.
//! - Writes go to a file in `.staging/` (same file system, never visible in a bucket), are
//!   flushed, and are renamed over the object: a reader sees the old object or the new one,
//!   never a part. (Staging outside the object's own folder also means a temporary name can
//!   never be a key.) Writes and deletes of one key are serialised within the process.
//! - What is left: the checks and the final `rename`/`unlink` are separate system calls, so a
//!   process that can write inside the folder and swaps a folder for a link in between could
//!   redirect one write or delete. Closing that needs `openat`/`renameat` on folder handles.
//!   Plugins cannot create links through this API; keep the folder writable by the host only.
//!
//! Limits of a file system that S3 does not have: a key segment is at most 255 bytes, and a key
//! cannot be both an object and a folder of keys (`a` and `a/b`); both are `invalid_key`. On a
//! case-insensitive file system (macOS's default), keys that differ only in case are one object.
//! Listing reads the bucket folder below the prefix's deepest folder on every page: fine for the
//! embedded default, and what the S3 backend is for beyond that.

mod backend;
mod meta;
mod nofollow;
mod presign_key;

pub(crate) use backend::FolderBuckets;
