//! Test plugin `panic-abort`: an ordinary plugin, but built with the `abort` profile
//! (`panic = "abort"`), which the host must refuse: a panic would kill the host.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct PanicAbort;

impl Plugin for PanicAbort {
    const MANIFEST: Manifest = Manifest::new("panic-abort", env!("CARGO_PKG_VERSION"));

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(PanicAbort);
