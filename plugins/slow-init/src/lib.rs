//! Test plugin `slow-init`: `initialize` sleeps for `config.ms` milliseconds and `cleanup` for
//! `config.cleanup_ms` (both default 0), then succeed. Used to race lifecycle operations against
//! the admin API's request timeout.
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Remembers how long it slept.
#[derive(Debug, Default)]
pub struct SlowInit {
    slept_ms: u64,
    cleanup_ms: u64,
}

impl Plugin for SlowInit {
    const MANIFEST: Manifest = Manifest::new("slow-init", env!("CARGO_PKG_VERSION"));

    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        let config: Value = ctx.config()?;
        self.slept_ms = config["ms"].as_u64().unwrap_or(0);
        self.cleanup_ms = config["cleanup_ms"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(self.slept_ms));
        Ok(())
    }

    fn cleanup(&mut self, _ctx: &Context) -> Result<()> {
        std::thread::sleep(Duration::from_millis(self.cleanup_ms));
        Ok(())
    }

    fn execute(&mut self, _ctx: &Context, _input: Value) -> Result<Value> {
        Ok(json!({ "slept_ms": self.slept_ms }))
    }
}

plugin_api::export_plugin!(SlowInit);
