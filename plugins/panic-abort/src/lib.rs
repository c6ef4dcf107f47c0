//! Test plugin `panic-abort`: an ordinary plugin, but built with the `abort` profile
//! (`panic = "abort"`), which the host must refuse: a panic would kill the host.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug, Default)]
pub struct PanicAbort;

impl Plugin for PanicAbort {
    const MANIFEST: Manifest = Manifest::new("panic-abort", env!("CARGO_PKG_VERSION"));

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(PanicAbort);
