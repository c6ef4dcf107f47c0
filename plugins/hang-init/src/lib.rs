//! Test plugin `hang-init`: `initialize` never returns, so the host's timeout must fire.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct HangInit;

impl Plugin for HangInit {
    const MANIFEST: Manifest = Manifest::new("hang-init", env!("CARGO_PKG_VERSION"));

    fn new(_ctx: &Context) -> Result<Self> {
        loop {
            std::thread::park();
        }
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(HangInit);
