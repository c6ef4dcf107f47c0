//! The buckets repository as a plugin sees it: objects (bytes with a content type) under keys,
//! in the buckets it declared, by logical name. The host keeps each plugin's buckets apart and
//! holds keys to its rules (1 to 1024 bytes; no NUL or control characters, no `\`, no leading
//! `/`, no empty, `.` or `..` segments), so a key can never reach outside its bucket. Bytes cross
//! the boundary as they are, without base64.
//!
//! ```ignore
//! let buckets = ctx.buckets();
//! buckets.put("files", "reports/2024.csv", b"a,b\n1,2\n", Some("text/csv"))?;
//! if let Some(object) = buckets.get("files", "reports/2024.csv")? {
//!     assert_eq!(object.content_type, "text/csv");
//! }
//! let page = buckets.list("files", "reports/", None, 100)?;
//! let url = buckets.presign_get("files", "reports/2024.csv", Duration::from_secs(3600))?;
//! ```

use std::time::Duration;

use crate::wire::buckets::{Delete, Exists, Get, List, PresignGet, Put};
use crate::wire::{Op, Service};
use crate::{Context, Error, Result, envelope};

/// An object read back from a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The content type given when it was stored (`application/octet-stream` when none was).
    pub content_type: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Keys relative to the bucket, sorted by their bytes.
    pub keys: Vec<String>,
    /// Pass it to the next [`Buckets::list`] call to get the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

/// The plugin's buckets. Obtained with [`Context::buckets`].
#[derive(Debug, Clone)]
pub struct Buckets {
    ctx: Context,
}

impl Buckets {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Sends one operation with `body` as the envelope's body; answers with the decoded
    /// header and the answer's body.
    fn call<O: Op>(&self, op: O, body: &[u8]) -> Result<(O::Response, Vec<u8>)> {
        let request = envelope::encode(&O::Request::from(op), body)?;
        let out = self.ctx.call_raw(Service::Buckets, &request)?;
        let (header, body) = envelope::decode(&out).map_err(|e| {
            Error::new(
                "internal",
                format!("the host's buckets answer is malformed: {}", e.message),
            )
        })?;
        Ok((header, body.to_vec()))
    }

    /// Stores `bytes` under `key`, replacing any object there. Atomic: a reader sees the old
    /// object or the new one, never a part.
    ///
    /// # Errors
    /// `bucket_access_denied` for a bucket the plugin may not use; `invalid_key`; `bad_request`
    /// for a content type that is not 1 to 255 printable ASCII characters;
    /// `backend_unavailable`.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<()> {
        let op = Put {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: content_type.map(str::to_owned),
        };
        self.call(op, bytes).map(drop)
    }

    /// Reads an object; `None` when there is none under `key`.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `backend_unavailable`.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Object>> {
        let op = Get {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        let (header, bytes) = self.call(op, &[])?;
        if !header.found {
            return Ok(None);
        }
        let content_type = header.content_type.ok_or_else(|| {
            Error::new(
                "internal",
                "the host answered a found object without its content type",
            )
        })?;
        Ok(Some(Object {
            bytes,
            content_type,
        }))
    }

    /// Deletes an object; whether there was one.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `backend_unavailable`.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<bool> {
        let op = Delete {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        Ok(self.call(op, &[])?.0.deleted)
    }

    /// Whether an object exists under `key`.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `backend_unavailable`.
    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool> {
        let op = Exists {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        Ok(self.call(op, &[])?.0.exists)
    }

    /// One page of the keys starting with `prefix` (`""` for all), sorted. `page_token` is the
    /// previous page's [`Page::next_page_token`] (`None` for the first page); `limit` is at most
    /// 1000 keys per page (more is clamped to 1000).
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key` for a prefix no key could match, `bad_request` for
    /// a `limit` of 0 or a page token that is not one, `backend_unavailable`.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let op = List {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            page_token: page_token.map(str::to_owned),
            limit: Some(u64::try_from(limit).unwrap_or(u64::MAX)),
        };
        let (header, _) = self.call(op, &[])?;
        Ok(Page {
            keys: header.keys,
            next_page_token: header.next_page_token,
        })
    }

    /// A URL anyone can GET the object with, without any other credential, for `expires`
    /// (whole seconds, 1 s to 7 days). Whoever holds the URL can read the object until then.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `bad_request` for an expiry outside 1 s to
    /// 7 days, `invalid_config` when the host has no public URL, `backend_unavailable`.
    pub fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> Result<String> {
        let op = PresignGet {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            expires_secs: expires.as_secs(),
        };
        Ok(self.call(op, &[])?.0.url)
    }
}
