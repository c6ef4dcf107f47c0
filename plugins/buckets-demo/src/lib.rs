//! Test plugin `buckets-demo`: declares only the bucket `files`, and passes each request through
//! the typed buckets API, so tests can ask for any bucket and any key:
//! `{"op": "put", "bucket", "key", "text" | "bytes", "content_type"}`, `get` (answers
//! `{"found", "text", "bytes", "content_type"}`), `delete`, `exists`,
//! `list {"prefix", "page_token", "limit"}`, `presign {"expires_secs"}`, and `bench {"n", "size"}`
//! (times `n` puts then `n` gets from inside the plugin). Tests make renamed copies (the name is
//! patched in place).
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct BucketsDemo;

fn text<'a>(input: &'a Value, field: &str) -> &'a str {
    input[field].as_str().unwrap_or_default()
}

impl Plugin for BucketsDemo {
    const MANIFEST: Manifest =
        Manifest::new("buckets-demo", env!("CARGO_PKG_VERSION")).buckets(&["files"]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        let b = ctx.buckets();
        let bucket = input["bucket"].as_str().unwrap_or("files");
        let key = text(&input, "key");
        match text(&input, "op") {
            "put" => {
                // `bytes` (an array of numbers) for binary content, else `text`.
                let bytes: Vec<u8> = match input["bytes"].as_array() {
                    Some(a) => a
                        .iter()
                        .map(|v| v.as_u64().unwrap_or_default() as u8)
                        .collect(),
                    None => text(&input, "text").as_bytes().to_vec(),
                };
                b.put(bucket, key, &bytes, input["content_type"].as_str())?;
                Ok(json!({ "stored": bytes.len() }))
            }
            "get" => Ok(match b.get(bucket, key)? {
                Some(o) => json!({
                    "found": true,
                    "text": String::from_utf8_lossy(&o.bytes),
                    "bytes": o.bytes,
                    "content_type": o.content_type,
                }),
                None => json!({ "found": false }),
            }),
            "delete" => Ok(json!({ "deleted": b.delete(bucket, key)? })),
            "exists" => Ok(json!({ "exists": b.exists(bucket, key)? })),
            "list" => {
                let page = b.list(
                    bucket,
                    text(&input, "prefix"),
                    input["page_token"].as_str(),
                    input["limit"].as_u64().unwrap_or(100) as usize,
                )?;
                Ok(json!({ "keys": page.keys, "next_page_token": page.next_page_token }))
            }
            "presign" => {
                let secs = input["expires_secs"].as_u64().unwrap_or(60);
                let url = b.presign_get(bucket, key, Duration::from_secs(secs))?;
                Ok(json!({ "url": url }))
            }
            "bench" => {
                // Times the repository from inside the plugin: `n` puts of `size` bytes under
                // `bench/`, then `n` gets of them.
                let n = input["n"].as_u64().unwrap_or(100);
                let size = input["size"].as_u64().unwrap_or(4096) as usize;
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
                        return Err(plugin_api::Error::msg("get did not return what was put"));
                    }
                }
                let get_ns = start.elapsed().as_nanos() as u64;
                Ok(json!({ "put_ns": put_ns, "get_ns": get_ns }))
            }
            other => Err(plugin_api::Error::new(
                "bad_request",
                format!("unknown op {other:?}"),
            )),
        }
    }
}

plugin_api::export_plugin!(BucketsDemo);
