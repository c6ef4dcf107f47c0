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

use serde_json::{Value, json};

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

fn malformed(what: &str) -> Error {
    Error::new(
        "internal",
        format!("the host answered a buckets {what} without its fields"),
    )
}

impl Buckets {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    fn call(&self, header: &Value, body: &[u8]) -> Result<(Value, Vec<u8>)> {
        let out = self
            .ctx
            .call_raw("buckets", &envelope::encode(header, body))?;
        let (header, body) = envelope::decode(&out)?;
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
        let header =
            json!({ "op": "put", "bucket": bucket, "key": key, "content_type": content_type });
        self.call(&header, bytes).map(drop)
    }

    /// Reads an object; `None` when there is none under `key`.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `backend_unavailable`.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Object>> {
        let (header, bytes) =
            self.call(&json!({ "op": "get", "bucket": bucket, "key": key }), &[])?;
        if !header["found"].as_bool().ok_or_else(|| malformed("get"))? {
            return Ok(None);
        }
        let content_type = header["content_type"]
            .as_str()
            .ok_or_else(|| malformed("get"))?
            .to_owned();
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
        let (header, _) = self.call(
            &json!({ "op": "delete", "bucket": bucket, "key": key }),
            &[],
        )?;
        header["deleted"]
            .as_bool()
            .ok_or_else(|| malformed("delete"))
    }

    /// Whether an object exists under `key`.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `backend_unavailable`.
    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool> {
        let (header, _) = self.call(
            &json!({ "op": "exists", "bucket": bucket, "key": key }),
            &[],
        )?;
        header["exists"]
            .as_bool()
            .ok_or_else(|| malformed("exists"))
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
        let (header, _) = self.call(
            &json!({ "op": "list", "bucket": bucket, "prefix": prefix,
                     "page_token": page_token, "limit": limit }),
            &[],
        )?;
        let keys = header["keys"]
            .as_array()
            .ok_or_else(|| malformed("list"))?
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed("list"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            keys,
            next_page_token: header["next_page_token"].as_str().map(str::to_owned),
        })
    }

    /// A URL anyone can GET the object with, without any other credential, for `expires`
    /// (whole seconds, 1 s to 7 days). Whoever holds the URL can read the object until then.
    ///
    /// # Errors
    /// `bucket_access_denied`, `invalid_key`, `bad_request` for an expiry outside 1 s to
    /// 7 days, `invalid_config` when the host has no public URL, `backend_unavailable`.
    pub fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> Result<String> {
        let (header, _) = self.call(
            &json!({ "op": "presign_get", "bucket": bucket, "key": key,
                     "expires_secs": expires.as_secs() }),
            &[],
        )?;
        header["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| malformed("presign_get"))
    }
}
