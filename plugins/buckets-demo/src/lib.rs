//! Test plugin `buckets-demo`: declares only the bucket `files`, and passes each request through
//! the typed buckets API, so tests can ask for any bucket and any key. Typed functions (every
//! input may name its `bucket`, default `files`, and `key`): `put {"text" | "bytes",
//! "content_type"}`, `get` (answers `{"found", "text", "bytes", "content_type"}`), `delete`,
//! `exists`, `list {"prefix", "page_token", "limit"}`, `presign {"expires_secs"}`, and
//! `bench {"n", "size"}` (times `n` puts then `n` gets from inside the plugin). `execute` takes
//! the same inputs with the function's name in `op`. Tests make renamed copies (the name is
//! patched in place).
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Function, Functions, Manifest, Plugin, Result};
use serde::Deserialize;

/// Stateless.
#[derive(Debug)]
pub struct BucketsDemo;

fn files() -> String {
    "files".to_owned()
}

/// The input of every function; each reads the fields it needs.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// The bucket (default `files`).
    #[serde(default = "files")]
    pub bucket: String,
    /// The object's key.
    #[serde(default)]
    pub key: String,
    /// `put`: text content (when `bytes` is absent).
    #[serde(default)]
    pub text: String,
    /// `put`: binary content, one number per byte (each taken modulo 256).
    #[serde(default)]
    pub bytes: Option<Vec<u64>>,
    /// `put`: the content type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// `list`: the key prefix.
    #[serde(default)]
    pub prefix: String,
    /// `list`: where the previous page ended.
    #[serde(default)]
    pub page_token: Option<String>,
    /// `list`: the page size (default 100).
    #[serde(default)]
    pub limit: Option<u64>,
    /// `presign`: the link's lifetime (default 60 s).
    #[serde(default)]
    pub expires_secs: Option<u64>,
    /// `bench`: how many objects (default 100).
    #[serde(default)]
    pub n: Option<u64>,
    /// `bench`: their size in bytes (default 4096).
    #[serde(default)]
    pub size: Option<u64>,
}

impl Plugin for BucketsDemo {
    const MANIFEST: Manifest = Manifest::new("buckets-demo", env!("CARGO_PKG_VERSION"))
        .buckets(&["files"])
        .functions(&[
            Function::new("put").summary("stores an object"),
            Function::new("get").summary("reads an object"),
            Function::new("delete").summary("deletes an object"),
            Function::new("exists").summary("whether an object exists"),
            Function::new("list").summary("one page of keys under a prefix"),
            Function::new("presign").summary("a presigned link to an object"),
            Function::new("bench").summary("times n puts then n gets"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("put", Self::put)
            .add_shared("get", Self::get)
            .add_shared("delete", Self::delete)
            .add_shared("exists", Self::exists)
            .add_shared("list", Self::list)
            .add_shared("presign", Self::presign)
            .add_shared("bench", Self::bench);
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        let op = input["op"].as_str().unwrap_or_default().to_owned();
        let input: Input = plugin_api::serde_json::from_value(input)
            .map_err(|e| Error::new("bad_request", e.to_string()))?;
        match op.as_str() {
            "put" => self.put(ctx, input),
            "get" => self.get(ctx, input),
            "delete" => self.delete(ctx, input),
            "exists" => self.exists(ctx, input),
            "list" => self.list(ctx, input),
            "presign" => self.presign(ctx, input),
            "bench" => self.bench(ctx, input),
            other => Err(Error::new("bad_request", format!("unknown op {other:?}"))),
        }
    }
}

impl BucketsDemo {
    fn put(&self, ctx: &Context, input: Input) -> Result<Value> {
        // `bytes` (an array of numbers) for binary content, else `text`.
        let bytes: Vec<u8> = match input.bytes {
            Some(a) => a.iter().map(|v| *v as u8).collect(),
            None => input.text.into_bytes(),
        };
        ctx.buckets().put(
            &input.bucket,
            &input.key,
            &bytes,
            input.content_type.as_deref(),
        )?;
        Ok(json!({ "stored": bytes.len() }))
    }

    fn get(&self, ctx: &Context, input: Input) -> Result<Value> {
        Ok(match ctx.buckets().get(&input.bucket, &input.key)? {
            Some(o) => json!({
                "found": true,
                "text": String::from_utf8_lossy(&o.bytes),
                "bytes": o.bytes,
                "content_type": o.content_type,
            }),
            None => json!({ "found": false }),
        })
    }

    fn delete(&self, ctx: &Context, input: Input) -> Result<Value> {
        Ok(json!({ "deleted": ctx.buckets().delete(&input.bucket, &input.key)? }))
    }

    fn exists(&self, ctx: &Context, input: Input) -> Result<Value> {
        Ok(json!({ "exists": ctx.buckets().exists(&input.bucket, &input.key)? }))
    }

    fn list(&self, ctx: &Context, input: Input) -> Result<Value> {
        let page = ctx.buckets().list(
            &input.bucket,
            &input.prefix,
            input.page_token.as_deref(),
            input.limit.unwrap_or(100) as usize,
        )?;
        Ok(json!({ "keys": page.keys, "next_page_token": page.next_page_token }))
    }

    fn presign(&self, ctx: &Context, input: Input) -> Result<Value> {
        let secs = input.expires_secs.unwrap_or(60);
        let url =
            ctx.buckets()
                .presign_get(&input.bucket, &input.key, Duration::from_secs(secs))?;
        Ok(json!({ "url": url }))
    }

    /// Times the repository from inside the plugin: `n` puts of `size` bytes under `bench/`,
    /// then `n` gets of them.
    fn bench(&self, ctx: &Context, input: Input) -> Result<Value> {
        let b = ctx.buckets();
        let bucket = input.bucket.as_str();
        let n = input.n.unwrap_or(100);
        let size = input.size.unwrap_or(4096) as usize;
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let start = std::time::Instant::now();
        for i in 0..n {
            b.put(
                bucket,
                &format!("bench/{i}"),
                &body,
                Some("application/octet-stream"),
            )?;
        }
        let put_ns = start.elapsed().as_nanos() as u64;
        let start = std::time::Instant::now();
        for i in 0..n {
            let got = b.get(bucket, &format!("bench/{i}"))?;
            if got.map(|o| o.bytes.len()) != Some(size) {
                return Err(Error::msg("get did not return what was put"));
            }
        }
        let get_ns = start.elapsed().as_nanos() as u64;
        Ok(json!({ "put_ns": put_ns, "get_ns": get_ns }))
    }
}

plugin_api::export_plugin!(BucketsDemo);
