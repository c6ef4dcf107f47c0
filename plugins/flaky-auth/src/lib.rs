//! Test plugin `flaky-auth`: an auth plugin (its function `authenticate` is what routes declared
//! `plugin:flaky-auth` call) that answers as the request's `x-auth` header asks:
//!
//! - `user:<name>` → `{"identity": {"user": "<name>"}}`;
//! - `panic` → panics; `slow:<ms>` → sleeps that long, then accepts as `slow`;
//! - `no-identity` → `{}` (an answer without `identity`); `null-identity` →
//!   `{"identity": null}`;
//! - anything else, or no header → the error `unauthorized`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Function, Functions, Manifest, Plugin, Result};
use serde::Deserialize;

/// The plugin (no state).
#[derive(Debug)]
pub struct FlakyAuth;

/// What the host sends `authenticate`.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// The request's headers, names in lower case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Plugin for FlakyAuth {
    const MANIFEST: Manifest = Manifest::new("flaky-auth", env!("CARGO_PKG_VERSION"))
        .description("an auth plugin that fails in each way the header x-auth asks")
        .functions(&[Function::new("authenticate").summary("answers as x-auth asks")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("authenticate", Self::authenticate);
    }
}

impl FlakyAuth {
    fn authenticate(&self, _: &Context, req: Request) -> Result<Value> {
        let asked = req.headers.get("x-auth").map_or("", String::as_str);
        if let Some(name) = asked.strip_prefix("user:") {
            return Ok(json!({ "identity": { "user": name } }));
        }
        if let Some(ms) = asked.strip_prefix("slow:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            return Ok(json!({ "identity": { "user": "slow" } }));
        }
        match asked {
            "panic" => panic!("flaky-auth panicked, as asked"),
            "no-identity" => Ok(json!({})),
            "null-identity" => Ok(json!({ "identity": null })),
            _ => Err(Error::new("unauthorized", "x-auth does not name a user")),
        }
    }
}

plugin_api::export_plugin!(FlakyAuth);
