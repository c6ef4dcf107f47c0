//! Test plugin `buckets-demo`: declares only the bucket `files`, and passes each request through
//! the typed buckets API, so tests can ask for any bucket and any key:
//! `{"op": "put", "bucket", "key", "text" | "bytes", "content_type"}`, `get` (answers
//! `{"found", "text", "bytes", "content_type"}`), `delete`, `exists`,
//! `list {"prefix", "page_token", "limit"}` and `presign {"expires_secs"}`. Tests make renamed
//! copies (the name is patched in place).
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug, Default)]
pub struct BucketsDemo;

fn text<'a>(input: &'a Value, field: &str) -> &'a str {
    input[field].as_str().unwrap_or_default()
}

impl Plugin for BucketsDemo {
    const MANIFEST: Manifest =
        Manifest::new("buckets-demo", env!("CARGO_PKG_VERSION")).buckets(&["files"]);

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
            other => Err(plugin_api::Error::new(
                "bad_request",
                format!("unknown op {other:?}"),
            )),
        }
    }
}

plugin_api::export_plugin!(BucketsDemo);
