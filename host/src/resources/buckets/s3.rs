//! S3 backend (aws-sdk-s3): every plugin bucket is the key prefix `<prefix><plugin>/<bucket>/`
//! inside the one configured physical bucket, so plugins never create, name or list S3 buckets,
//! and one plugin's objects can never collide with another's (plugin and bucket names contain no
//! `/`). Works with AWS, MinIO and s3s-fs: endpoint, region, path-style addressing and static
//! credentials come from [`S3Config`].
//!
//! The SDK is asynchronous; this backend owns a small tokio runtime and blocks only the calling
//! plugin thread (never a thread of the server's runtime), like the PostgreSQL and Kafka
//! backends. Presigned links are S3's own (SigV4 query signing): they point at the object store,
//! not at the host, so the host's `/presigned/{token}` route refuses every token.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use super::key::MAX_KEY_BYTES;
use super::{BucketBackend, Object, Page};
use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::resources::naming;

/// Time to open a connection to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for one whole operation, retries included: a plugin thread never waits longer.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects in one S3 bucket.
pub(crate) struct S3Buckets {
    client: Client,
    bucket: String,
    prefix: String,
    /// Shown to operators: `s3://bucket/` or `endpoint/bucket/`.
    display: String,
    /// Always `Some` until dropped (see the `Drop` impl).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for S3Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Buckets")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::BackendUnavailable {
        kind: crate::BackendKind::Buckets,
        message: message.into(),
    }
}

fn invalid_config(key: &str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.into(),
        message: message.into(),
    }
}

/// An SDK failure as a host error: the store's error code and message when it answered, the
/// transport's error chain otherwise. Never includes credentials (the SDK's errors do not).
fn failure<E>(operation: &str, bucket: &str, e: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e.code(), e.raw_response().map(|r| r.status().as_u16())) {
        (Some("NoSuchBucket"), _) => unavailable(format!(
            "S3 bucket `{bucket}` does not exist (create it, or set create_bucket = true)"
        )),
        (Some(code), status) => unavailable(format!(
            "S3 {operation} failed: {code}{}{}",
            status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
            e.message().map(|m| format!(": {m}")).unwrap_or_default()
        )),
        // A HEAD has no body, so no error code: the status says what failed.
        (None, Some(status)) => unavailable(format!(
            "S3 {operation} of bucket `{bucket}` was refused with HTTP {status}{}",
            match status {
                401 | 403 => {
                    ": the store rejected the credentials (wrong access key id or secret access \
                     key, or no permission on the bucket; the secret is never shown)"
                }
                _ => "",
            }
        )),
        (None, None) => unavailable(format!(
            "S3 {operation} of bucket `{bucket}` failed: {}",
            one_line(e)
        )),
    }
}

/// An error and its causes on one line, without the SDK's debug dump: `dispatch failure: io
/// error: Connection refused (os error 111)`. Repeated messages are shown once.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string().replace(['\n', '\r'], " ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Whether the store answered 404 (a `HEAD` has no body, hence no error code).
fn is_not_found<E>(e: &SdkError<E, HttpResponse>) -> bool {
    e.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

impl S3Buckets {
    /// Builds the client and checks the bucket: it must exist (or is created when
    /// `create_bucket` is set) and the credentials must be accepted.
    ///
    /// # Errors
    /// `invalid_config` for a bucket name S3 would refuse, a bad prefix or endpoint, or a missing
    /// bucket; `backend_unavailable` when the store does not answer or refuses the credentials.
    pub(crate) fn connect(config: &S3Config) -> Result<Self> {
        naming::validate_s3_bucket(&config.bucket)?;
        naming::validate_s3_prefix(&config.prefix)?;
        if let Some(endpoint) = &config.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid_config(
                "backends.buckets.endpoint",
                format!("{endpoint:?}: use an http:// or https:// URL"),
            ));
        }
        if config.region.is_empty() {
            return Err(invalid_config(
                "backends.buckets.region",
                "a region is required (us-east-1 for most S3-compatible stores)",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plugin-host-s3")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the S3 runtime: {e}")))?;
        let credentials = Credentials::new(
            &config.credentials.access_key_id,
            &config.credentials.secret_access_key,
            config.credentials.session_token.clone(),
            None,
            "plugin-host-config",
        );
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .http_client(http)
            .force_path_style(config.path_style)
            // Checksums only where S3 requires them: many S3-compatible stores do not accept
            // the streaming (aws-chunked) checksum trailers the SDK sends by default.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        let display = match &config.endpoint {
            Some(endpoint) => format!("{}/{}/", endpoint.trim_end_matches('/'), config.bucket),
            None => format!("s3://{}/", config.bucket),
        };
        let this = Self {
            client,
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            display,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        };
        this.ensure_bucket(config.create_bucket, &config.region)?;
        Ok(this)
    }

    fn ensure_bucket(&self, create: bool, region: &str) -> Result<()> {
        let head = self
            .handle
            .block_on(self.client.head_bucket().bucket(&self.bucket).send());
        match head {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) && create => {
                let mut request = self.client.create_bucket().bucket(&self.bucket);
                if region != "us-east-1" {
                    request = request.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.into())
                            .build(),
                    );
                }
                match self.handle.block_on(request.send()) {
                    Ok(_) => Ok(()),
                    // Another host with these credentials created it meanwhile. (Not
                    // `BucketAlreadyExists`: that name belongs to another account.)
                    Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
                    Err(e) => Err(failure("CreateBucket", &self.bucket, &e)),
                }
            }
            Err(e) if is_not_found(&e) => Err(invalid_config(
                "backends.buckets.bucket",
                format!(
                    "S3 bucket `{}` does not exist at {} (create it, or set create_bucket = true)",
                    self.bucket, self.display
                ),
            )),
            Err(e) => Err(failure("HeadBucket", &self.bucket, &e)),
        }
    }

    /// The S3 key of a plugin's key; S3's own length limit applies to the whole key.
    fn object_key(&self, location: &str, key: &str) -> Result<String> {
        let full = format!("{}{location}{key}", self.prefix);
        if full.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidKey {
                key: key.chars().take(120).collect(),
                reason: format!(
                    "stored under `{}{location}` it is {} bytes long; S3's limit is {MAX_KEY_BYTES}",
                    self.prefix,
                    full.len()
                ),
            });
        }
        Ok(full)
    }

    fn head(&self, full: &str) -> Result<bool> {
        match self.handle.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(full)
                .send(),
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failure("HeadObject", &self.bucket, &e)),
        }
    }
}

impl BucketBackend for S3Buckets {
    fn describe(&self, location: &str) -> String {
        format!("{}{}{location}", self.display, self.prefix)
    }

    fn put(
        &self,
        location: &str,
        key: &str,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<()> {
        let full = self.object_key(location, key)?;
        self.handle
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(full)
                    .set_content_type(content_type.map(str::to_owned))
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .map_err(|e| failure("PutObject", &self.bucket, &e))?;
        Ok(())
    }

    fn get(&self, location: &str, key: &str) -> Result<Option<Object>> {
        let full = self.object_key(location, key)?;
        self.handle.block_on(async {
            let output = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(full)
                .send()
                .await
            {
                Ok(output) => output,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(failure("GetObject", &self.bucket, &e)),
            };
            let content_type = output.content_type.clone();
            let bytes = output
                .body
                .collect()
                .await
                .map_err(|e| unavailable(format!("S3 GetObject body: {e}")))?
                .to_vec();
            Ok(Some(Object {
                bytes,
                content_type,
            }))
        })
    }

    fn delete(&self, location: &str, key: &str) -> Result<bool> {
        let full = self.object_key(location, key)?;
        // S3's DELETE succeeds whether or not the object existed; a HEAD first tells which
        // (a concurrent writer can make the answer stale, never the deletion wrong).
        let existed = self.head(&full)?;
        if existed {
            self.handle
                .block_on(
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(full)
                        .send(),
                )
                .map_err(|e| failure("DeleteObject", &self.bucket, &e))?;
        }
        Ok(existed)
    }

    fn exists(&self, location: &str, key: &str) -> Result<bool> {
        let full = self.object_key(location, key)?;
        self.head(&full)
    }

    fn list(
        &self,
        location: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let base = format!("{}{location}", self.prefix);
        let mut start_after = after.map(|a| format!("{base}{a}"));
        loop {
            let output = self
                .handle
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(format!("{base}{prefix}"))
                        .set_start_after(start_after.clone())
                        .max_keys(i32::try_from(limit).unwrap_or(i32::MAX))
                        .send(),
                )
                .map_err(|e| failure("ListObjectsV2", &self.bucket, &e))?;
            let mut keys = Vec::new();
            for object in output.contents() {
                // Keys another writer stored that break the key rules (a console's `folder/`
                // marker, say) are not shown to the plugin.
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&base))
                    && super::key::validate(key).is_ok()
                {
                    keys.push(key.to_owned());
                }
            }
            let truncated = output.is_truncated() == Some(true);
            let last_raw = output.contents().last().and_then(|o| o.key());
            match (truncated, keys.last(), last_raw) {
                // A full page of hidden keys: go on after them rather than end early.
                (true, None, Some(raw)) => start_after = Some(raw.to_owned()),
                (true, Some(last), _) => {
                    let next_page_token = Some(last.clone());
                    return Ok(Page {
                        keys,
                        next_page_token,
                    });
                }
                _ => {
                    return Ok(Page {
                        keys,
                        next_page_token: None,
                    });
                }
            }
        }
    }

    fn presign_get(&self, location: &str, key: &str, expires: Duration) -> Result<String> {
        let full = self.object_key(location, key)?;
        let config = PresigningConfig::expires_in(expires).map_err(|e| Error::BadRequest {
            message: format!("presign expiry: {e}"),
        })?;
        let request = self
            .handle
            .block_on(
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(full)
                    .presigned(config),
            )
            .map_err(|e| failure("presign GetObject", &self.bucket, &e))?;
        Ok(request.uri().to_owned())
    }

    fn presigned_get(&self, _token: &str) -> Result<Object> {
        Err(Error::PresignedUrlInvalid {
            reason: "this host's buckets are in S3: presigned links point at the object store"
                .into(),
        })
    }

    fn check(&self) -> Result<()> {
        self.handle
            .block_on(self.client.head_bucket().bucket(&self.bucket).send())
            .map(|_| ())
            .map_err(|e| {
                if is_not_found(&e) {
                    unavailable(format!("S3 bucket `{}` does not exist", self.bucket))
                } else {
                    failure("HeadBucket", &self.bucket, &e)
                }
            })
    }
}

impl Drop for S3Buckets {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; shutting it down in
        // the background never does, wherever the manager is dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
