//! A real S3 server for the tests and benches, and a raw client to look behind the host's back.
//!
//! By default: `s3s-fs` (an S3-protocol server over a folder) started in this process on a
//! loopback port, with SigV4 authentication on, so every request the host sends is a real,
//! signed HTTP request checked by the server. Set `PLUGIN_HOST_TEST_S3_ENDPOINT` to use any other
//! S3-compatible endpoint (MinIO, AWS) instead, with `PLUGIN_HOST_TEST_S3_BUCKET` (default
//! `plugin-host-test`, created if missing), `PLUGIN_HOST_TEST_S3_REGION` (default `us-east-1`)
//! and credentials in `PLUGIN_HOST_TEST_S3_ACCESS_KEY` / `PLUGIN_HOST_TEST_S3_SECRET_KEY`
//! (default: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
//!
//! Tests share one bucket and never meet: each gets its own key prefix.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use plugin_host::{S3Config, S3Credentials};

/// Credentials of the in-process server.
const ACCESS_KEY: &str = "plugin-host-test";
const SECRET_KEY: &str = "plugin-host-test-secret";

/// Where the tests' S3 server is.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// Endpoint URL.
    pub endpoint: String,
    /// The shared bucket.
    pub bucket: String,
    /// Region requests are signed for.
    pub region: String,
    /// Credentials it accepts.
    pub credentials: S3Credentials,
    /// Whether this is the in-process s3s-fs server (else an external endpoint).
    pub in_process: bool,
}

/// The runtime that serves the in-process server and drives the raw client.
pub fn s3_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-s3")
            .enable_all()
            .build()
            .expect("the test S3 runtime starts")
    })
}

/// The S3 server, started on first use, with its bucket created.
pub fn s3_target() -> &'static S3Target {
    static TARGET: OnceLock<S3Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let target = match var("PLUGIN_HOST_TEST_S3_ENDPOINT") {
            Some(endpoint) => S3Target {
                endpoint,
                bucket: var("PLUGIN_HOST_TEST_S3_BUCKET").unwrap_or("plugin-host-test".into()),
                region: var("PLUGIN_HOST_TEST_S3_REGION").unwrap_or("us-east-1".into()),
                credentials: S3Credentials::new(
                    &var("PLUGIN_HOST_TEST_S3_ACCESS_KEY")
                        .or_else(|| var("AWS_ACCESS_KEY_ID"))
                        .expect("PLUGIN_HOST_TEST_S3_ACCESS_KEY or AWS_ACCESS_KEY_ID"),
                    &var("PLUGIN_HOST_TEST_S3_SECRET_KEY")
                        .or_else(|| var("AWS_SECRET_ACCESS_KEY"))
                        .expect("PLUGIN_HOST_TEST_S3_SECRET_KEY or AWS_SECRET_ACCESS_KEY"),
                ),
                in_process: false,
            },
            None => S3Target {
                endpoint: start_s3s_fs(),
                bucket: "plugin-host-test".into(),
                region: "us-east-1".into(),
                credentials: S3Credentials::new(ACCESS_KEY, SECRET_KEY),
                in_process: true,
            },
        };
        let raw = raw_client(&target);
        s3_runtime().block_on(async {
            if raw
                .head_bucket()
                .bucket(&target.bucket)
                .send()
                .await
                .is_err()
            {
                raw.create_bucket()
                    .bucket(&target.bucket)
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot create the test bucket {} at {}: {}",
                            target.bucket,
                            target.endpoint,
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    });
            }
        });
        target
    })
}

/// Starts s3s-fs over a fresh folder on a loopback port; returns its endpoint URL.
fn start_s3s_fs() -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let root = s3s_root();
    let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs opens its folder");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let rt = s3_runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    rt.spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            // As any production S3 endpoint does: without it, Nagle's algorithm holds a
            // response's body behind its headers until the client's delayed ACK (~40 ms).
            let _ = socket.set_nodelay(true);
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A folder for this process's s3s-fs; folders of processes that are gone are removed.
fn s3s_root() -> PathBuf {
    let base = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("plugin-host-s3s-")
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let root = base.join(format!("plugin-host-s3s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the s3s-fs folder");
    root
}

/// A raw aws-sdk-s3 client on the target, configured as the host's backend is (path style,
/// checksums only where required, the same timeouts): the baseline of the benches and the
/// tests' own eyes.
pub fn raw_client(target: &S3Target) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(target.region.clone()))
        .endpoint_url(&target.endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &target.credentials.access_key_id,
            &target.credentials.secret_access_key,
            None,
            None,
            "test",
        ))
        .http_client(http)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// A fresh key prefix in the shared bucket (`t-<tag>-<pid>-<n>/`): one per test.
pub fn s3_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t-{tag}-{}-{}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The host's S3 config for the shared bucket under `prefix`.
pub fn s3_config(prefix: &str) -> S3Config {
    let t = s3_target();
    S3Config::new(Some(t.endpoint.clone()), &t.bucket, t.credentials.clone())
        .with_region(&t.region)
        .with_prefix(prefix)
}

/// Blocking views of the shared bucket, for assertions.
#[derive(Debug, Clone)]
pub struct S3Raw {
    /// The client.
    pub client: Client,
    /// The bucket.
    pub bucket: String,
}

impl S3Raw {
    /// A raw client on the tests' server.
    pub fn new() -> Self {
        let t = s3_target();
        Self {
            client: raw_client(t),
            bucket: t.bucket.clone(),
        }
    }

    /// The object at `key` (a full S3 key), if any.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        s3_runtime().block_on(async {
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => Some(out.body.collect().await.expect("read the body").to_vec()),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
                Err(e) => panic!(
                    "raw GET {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ),
            }
        })
    }

    /// Stores `bytes` at `key` (a full S3 key).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        s3_runtime()
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .expect("raw PUT");
    }

    /// Every key in the bucket starting with `prefix`.
    pub fn keys(&self, prefix: &str) -> BTreeSet<String> {
        s3_runtime().block_on(async {
            let mut out = BTreeSet::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.expect("raw LIST");
                out.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            out
        })
    }
}

impl Default for S3Raw {
    fn default() -> Self {
        Self::new()
    }
}
