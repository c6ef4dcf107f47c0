//! Test plugin `cycle-b`: a dependency-graph probe declaring a dependency on `cycle-a`, which depends on it.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Probe;

impl Plugin for Probe {
    const MANIFEST: Manifest =
        Manifest::new("cycle-b", env!("CARGO_PKG_VERSION")).depends_on(&[("cycle-a", "*")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(Probe);
