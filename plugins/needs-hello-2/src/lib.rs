//! Test plugin `needs-hello-2`: a dependency-graph probe declaring a dependency on `hello ^2` (hello is 1.x).
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Probe;

impl Plugin for Probe {
    const MANIFEST: Manifest =
        Manifest::new("needs-hello-2", env!("CARGO_PKG_VERSION")).depends_on(&[("hello", "^2")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(Probe);
