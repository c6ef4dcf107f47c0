//! The buckets repository: a plugin puts, gets, deletes, lists and checks objects, and asks for
//! presigned GET links, in the buckets it may use, by logical name. [`ScopedBuckets`] checks
//! each request against the plugin's effective allow-list (a denial is a typed, counted error),
//! holds keys to the key rules (`key`), and maps the logical bucket to its physical location once,
//! for every backend: the key prefix `<plugin>/<bucket>/` of `naming::s3_prefix`. Backends see
//! locations and valid keys only, do the I/O, and decide nothing about access.
//!
//! Requests and answers are envelopes (`plugin_api::envelope`: a JSON header and a raw body), so
//! object bytes cross the plugin boundary without base64. Called by the manager's host-service
//! dispatch (`manager/services.rs`) on the calling plugin's own thread.
//!
//! Backends: `folder/` (the embedded default) and `s3.rs` (feature `s3`). Presigned-link tokens (pure) are in `token.rs`.

mod folder;
mod key;
#[cfg(feature = "s3")]
mod s3;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plugin_api::wire::Op;
use plugin_api::wire::buckets::{
    Delete, Deleted, Existence, Exists, Fetched, Get, List, Listed, PresignGet, Presigned, Put,
    Request, Stored,
};

use super::naming::{self, Kind};
use super::scope::Scope;
use crate::config::BucketsConfig;
use crate::error::{Error, Result};

/// The longest lifetime of a presigned link: 7 days, as S3 allows.
pub(crate) const MAX_PRESIGN_SECS: u64 = 7 * 24 * 60 * 60;
/// Keys per listing page when the plugin does not say.
pub(crate) const DEFAULT_LIST_LIMIT: usize = 100;
/// The most keys one listing page returns (larger limits are clamped, as S3 does).
pub(crate) const MAX_LIST_LIMIT: usize = 1000;
/// Content type of an object stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The longest content type accepted.
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// A stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub(crate) bytes: Vec<u8>,
    /// As given at `put` (`None`: none was given).
    pub(crate) content_type: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Page {
    /// Keys relative to the bucket, sorted by their bytes.
    pub(crate) keys: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub(crate) next_page_token: Option<String>,
}

/// A bucket backend. `location` is a physical bucket (`<plugin>/<bucket>/`, from `naming`);
/// keys are already valid (`key::validate`). Knows nothing of access.
pub(crate) trait BucketBackend: Send + Sync + std::fmt::Debug {
    /// Where `location` lives, for operators (`GET /plugins/{name}`).
    fn describe(&self, location: &str) -> String;
    /// Stores an object, replacing any previous one, atomically.
    fn put(
        &self,
        location: &str,
        key: &str,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<()>;
    /// Reads an object (`None`: no such object).
    fn get(&self, location: &str, key: &str) -> Result<Option<Object>>;
    /// Deletes an object; whether there was one.
    fn delete(&self, location: &str, key: &str) -> Result<bool>;
    /// Whether an object exists.
    fn exists(&self, location: &str, key: &str) -> Result<bool>;
    /// Keys starting with `prefix`, sorted, after the key `after` (a page token), at most `limit`.
    fn list(&self, location: &str, prefix: &str, after: Option<&str>, limit: usize)
    -> Result<Page>;
    /// A URL that GETs one object without any other credential, until `expires` from now.
    fn presign_get(&self, location: &str, key: &str, expires: Duration) -> Result<String>;
    /// The object a presigned token points at, if the token is genuine and current.
    fn presigned_get(&self, token: &str) -> Result<Object>;
    /// Whether the backend answers (for `/health`).
    fn check(&self) -> Result<()>;
}

/// Builds the configured backend (none when the config says so).
///
/// # Errors
/// `internal` (an I/O error) when the folder or its presign key cannot be created or read;
/// `invalid_config` for a corrupt presign key, a bad S3 setting or a missing S3 bucket;
/// `backend_unavailable` when the S3 store does not answer.
pub(crate) fn backend(config: &BucketsConfig) -> Result<Option<Arc<dyn BucketBackend>>> {
    match config {
        BucketsConfig::None => Ok(None),
        BucketsConfig::Folder { dir, public_url } => Ok(Some(Arc::new(
            folder::FolderBuckets::open(dir, public_url.clone())?,
        ))),
        #[cfg(feature = "s3")]
        BucketsConfig::S3(s3) => Ok(Some(Arc::new(s3::S3Buckets::connect(s3)?))),
        #[allow(unreachable_patterns, reason = "reachable when the s3 feature is off")]
        other => Err(Error::InvalidConfig {
            key: "backends.buckets.backend".into(),
            message: format!(
                "{other:?} is not compiled into this build (enable its cargo feature)"
            ),
        }),
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::BadRequest {
        message: message.into(),
    }
}

/// A content type is stored and later sent as an HTTP header: printable ASCII only, so that it
/// can never split a header.
fn check_content_type(content_type: &str) -> Result<()> {
    if content_type.is_empty()
        || content_type.len() > MAX_CONTENT_TYPE_BYTES
        || !content_type.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(bad(format!(
            "content type {:?} must be 1 to {MAX_CONTENT_TYPE_BYTES} printable ASCII characters",
            content_type.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// One plugin instance's view of its buckets: the effective allow-list (logical bucket →
/// physical location) and the backend.
#[derive(Debug)]
pub(crate) struct ScopedBuckets {
    scope: Scope<String>,
    backend: Arc<dyn BucketBackend>,
}

impl ScopedBuckets {
    /// Opens a plugin's buckets (after overrides: `bucket_map` maps a logical name to the logical
    /// name whose location it uses).
    ///
    /// # Errors
    /// `invalid_name` for a bucket name that breaks the naming rule.
    pub(crate) fn open(
        backend: &Arc<dyn BucketBackend>,
        plugin: &str,
        buckets: &[String],
        map: &BTreeMap<String, String>,
    ) -> Result<Self> {
        Ok(Self {
            scope: Scope::new(plugin, Kind::Bucket, buckets, map, |name| {
                naming::s3_prefix(plugin, name)
            })?,
            backend: Arc::clone(backend),
        })
    }

    /// Where each logical bucket lives.
    pub(crate) fn physical_names(&self) -> BTreeMap<String, String> {
        self.scope
            .iter()
            .map(|(logical, location)| (logical.clone(), self.backend.describe(location)))
            .collect()
    }

    /// How many bucket accesses were refused.
    pub(crate) fn denied(&self) -> u64 {
        self.scope.denied()
    }

    /// The location of an allowed bucket; a denial otherwise (counted).
    fn location(&self, bucket: &str) -> Result<&str> {
        self.scope.get(bucket).map(String::as_str)
    }

    /// The location of an allowed bucket and a valid key: the checks every keyed operation
    /// makes, access first.
    fn target(&self, bucket: &str, key: &str) -> Result<&str> {
        let location = self.location(bucket)?;
        key::validate(key)?;
        Ok(location)
    }

    /// Handles one request from the plugin (`body` is its envelope's body); answers with an
    /// envelope: the operation's answer as its header, and the object's bytes for a `get`.
    ///
    /// # Errors
    /// `bad_request` for a malformed request, `bucket_access_denied`, `invalid_key`, and the
    /// backend's errors.
    pub(crate) fn handle(&self, request: Request, body: &[u8]) -> Result<Vec<u8>> {
        // One arm per operation and no wildcard: an operation added to the wire protocol does
        // not compile until it is handled here.
        match request {
            Request::Put(op) => envelope(&self.put(op, body)?, &[]),
            Request::Get(op) => {
                let (header, bytes) = self.get(op)?;
                envelope(&header, &bytes)
            }
            Request::Delete(op) => envelope(&self.delete(op)?, &[]),
            Request::Exists(op) => envelope(&self.exists(op)?, &[]),
            Request::List(op) => envelope(&self.list(op)?, &[]),
            Request::PresignGet(op) => envelope(&self.presign_get(op)?, &[]),
        }
    }

    fn put(&self, op: Put, body: &[u8]) -> Result<<Put as Op>::Response> {
        let Put {
            bucket,
            key,
            content_type,
        } = op;
        let location = self.target(&bucket, &key)?;
        if let Some(ct) = &content_type {
            check_content_type(ct)?;
        }
        self.backend
            .put(location, &key, body, content_type.as_deref())?;
        Ok(Stored {
            size: body.len() as u64,
        })
    }

    fn get(&self, op: Get) -> Result<(<Get as Op>::Response, Vec<u8>)> {
        let Get { bucket, key } = op;
        let location = self.target(&bucket, &key)?;
        Ok(match self.backend.get(location, &key)? {
            Some(object) => (
                Fetched {
                    found: true,
                    content_type: Some(
                        object
                            .content_type
                            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
                    ),
                    size: Some(object.bytes.len() as u64),
                },
                object.bytes,
            ),
            None => (
                Fetched {
                    found: false,
                    content_type: None,
                    size: None,
                },
                Vec::new(),
            ),
        })
    }

    fn delete(&self, op: Delete) -> Result<<Delete as Op>::Response> {
        let Delete { bucket, key } = op;
        let location = self.target(&bucket, &key)?;
        let deleted = self.backend.delete(location, &key)?;
        Ok(Deleted { deleted })
    }

    fn exists(&self, op: Exists) -> Result<<Exists as Op>::Response> {
        let Exists { bucket, key } = op;
        let location = self.target(&bucket, &key)?;
        let exists = self.backend.exists(location, &key)?;
        Ok(Existence { exists })
    }

    fn list(&self, op: List) -> Result<<List as Op>::Response> {
        let List {
            bucket,
            prefix,
            page_token,
            limit,
        } = op;
        let location = self.location(&bucket)?;
        key::validate_prefix(&prefix)?;
        let limit = match limit {
            None => DEFAULT_LIST_LIMIT,
            Some(0) => return Err(bad("list limit must be at least 1")),
            Some(n) => usize::try_from(n)
                .unwrap_or(MAX_LIST_LIMIT)
                .min(MAX_LIST_LIMIT),
        };
        // A page token is the last key of the previous page; anything else is refused rather
        // than silently listing from somewhere unexpected.
        if let Some(token) = &page_token {
            key::validate(token).map_err(|_| bad("invalid page token"))?;
        }
        let page = self
            .backend
            .list(location, &prefix, page_token.as_deref(), limit)?;
        Ok(Listed {
            keys: page.keys,
            next_page_token: page.next_page_token,
        })
    }

    fn presign_get(&self, op: PresignGet) -> Result<<PresignGet as Op>::Response> {
        let PresignGet {
            bucket,
            key,
            expires_secs,
        } = op;
        let location = self.target(&bucket, &key)?;
        if expires_secs == 0 || expires_secs > MAX_PRESIGN_SECS {
            return Err(bad(format!(
                "expires_secs must be 1 to {MAX_PRESIGN_SECS} (7 days); got {expires_secs}"
            )));
        }
        let url = self
            .backend
            .presign_get(location, &key, Duration::from_secs(expires_secs))?;
        Ok(Presigned { url })
    }
}

/// An answer as an envelope: its JSON header and `body`.
fn envelope<T: serde::Serialize>(header: &T, body: &[u8]) -> Result<Vec<u8>> {
    plugin_api::envelope::encode(header, body).map_err(|e| Error::Internal {
        message: format!("cannot encode a buckets answer: {}", e.message),
    })
}

/// A fresh folder for one unit test, removed on drop (the host has no tempfile dependency).
#[cfg(test)]
pub(crate) struct TestDir(pub(crate) std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plugin-host-buckets-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn scoped(dir: &std::path::Path) -> ScopedBuckets {
        let backend = backend(&BucketsConfig::Folder {
            dir: dir.to_owned(),
            public_url: Some("http://127.0.0.1:8700/".into()),
        })
        .unwrap()
        .unwrap();
        ScopedBuckets::open(&backend, "demo", &["files".into()], &BTreeMap::new()).unwrap()
    }

    /// Sends a request written as JSON, as a plugin's would arrive; a malformed one is the
    /// `bad_request` the manager's decoding gives.
    fn call(s: &ScopedBuckets, header: Value, body: &[u8]) -> Result<(Value, Vec<u8>)> {
        let request: Request = serde_json::from_value(header).map_err(|e| bad(e.to_string()))?;
        let out = s.handle(request, body)?;
        let (h, b) = plugin_api::envelope::decode::<Value>(&out).unwrap();
        Ok((h, b.to_vec()))
    }

    #[test]
    fn round_trip_and_denials() {
        let dir = TestDir::new();
        let s = scoped(dir.path());
        let (h, _) = call(
            &s,
            json!({"op": "put", "bucket": "files", "key": "a/b.txt", "content_type": "text/plain"}),
            b"hi",
        )
        .unwrap();
        assert_eq!(h["size"], 2);
        let (h, body) = call(
            &s,
            json!({"op": "get", "bucket": "files", "key": "a/b.txt"}),
            b"",
        )
        .unwrap();
        assert_eq!((h["found"].clone(), body), (json!(true), b"hi".to_vec()));
        assert_eq!(h["content_type"], "text/plain");
        let e = call(&s, json!({"op": "get", "bucket": "other", "key": "a"}), b"").unwrap_err();
        assert_eq!(e.code().as_str(), "bucket_access_denied");
        assert_eq!(s.denied(), 1);
        let e = call(
            &s,
            json!({"op": "get", "bucket": "files", "key": "../x"}),
            b"",
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_key");
        let (h, _) = call(
            &s,
            json!({"op": "presign_get", "bucket": "files", "key": "a/b.txt", "expires_secs": 60}),
            b"",
        )
        .unwrap();
        assert!(
            h["url"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:8700/presigned/v1."),
            "{h}"
        );
        for secs in [0, MAX_PRESIGN_SECS + 1] {
            let e = call(
                &s,
                json!({"op": "presign_get", "bucket": "files", "key": "a", "expires_secs": secs}),
                b"",
            )
            .unwrap_err();
            assert_eq!(e.code().as_str(), "bad_request");
        }
        for ct in ["", "text/plain\r\nX-Evil: 1", "tëxt/plain"] {
            let e = call(
                &s,
                json!({"op": "put", "bucket": "files", "key": "c", "content_type": ct}),
                b"",
            )
            .unwrap_err();
            assert_eq!(e.code().as_str(), "bad_request", "{ct:?}");
        }
        let e = call(
            &s,
            json!({"op": "list", "bucket": "files", "limit": 0}),
            b"",
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "bad_request");
        let e = call(&s, json!({"op": "nope"}), b"").unwrap_err();
        assert_eq!(e.code().as_str(), "bad_request");
    }
}
