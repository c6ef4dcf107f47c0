//! Test plugin `fail-init`: `initialize` subscribes to an event and then fails, so the host
//! must roll the subscription back.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Error, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct FailInit;

impl Plugin for FailInit {
    const MANIFEST: Manifest = Manifest::new("fail-init", env!("CARGO_PKG_VERSION"));

    fn new(ctx: &Context) -> Result<Self> {
        ctx.on("test:*", |_| Ok(()))?;
        Err(Error::new("not_ready", "fail-init refuses to start"))
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(FailInit);
