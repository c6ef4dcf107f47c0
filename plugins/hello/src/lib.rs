//! Example plugin `hello`: answers `{"name": "..."}` with a greeting.
//!
//! It also counts its calls, to show that a plugin keeps state between calls, and answers
//! `{"op": "count"}` with that count.
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// The plugin's state: how many greetings it gave.
#[derive(Debug, Default)]
pub struct Hello {
    calls: u64,
}

impl Plugin for Hello {
    const MANIFEST: Manifest =
        Manifest::new("hello", env!("CARGO_PKG_VERSION")).description("answers greetings");

    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        ctx.info("hello is ready");
        Ok(())
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        if input["op"] == "count" {
            return Ok(json!({ "count": self.calls }));
        }
        self.calls += 1;
        let name = input["name"].as_str().unwrap_or("world");
        Ok(json!({ "greeting": format!("hello, {name}") }))
    }
}

plugin_api::export_plugin!(Hello);
