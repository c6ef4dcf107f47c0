//! Test plugin `slow-init`: `initialize` sleeps for `config.ms` milliseconds and `cleanup` for
//! `config.cleanup_ms` (both default 0), then succeed. Used to race lifecycle operations against
//! the admin API's request timeout.
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// The config: how long `new` and `cleanup` sleep (both default to 0).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Config {
    ms: u64,
    cleanup_ms: u64,
}

/// Remembers how long it slept.
#[derive(Debug)]
pub struct SlowInit {
    slept_ms: u64,
    cleanup_ms: u64,
}

impl Plugin for SlowInit {
    const MANIFEST: Manifest = Manifest::new("slow-init", env!("CARGO_PKG_VERSION"));

    fn new(ctx: &Context) -> Result<Self> {
        let config: Option<Config> = ctx.config()?;
        let config = config.unwrap_or_default();
        std::thread::sleep(Duration::from_millis(config.ms));
        Ok(Self {
            slept_ms: config.ms,
            cleanup_ms: config.cleanup_ms,
        })
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
