//! Bench template `chain-link-00000`, depending on `chain-link-99999`. The lifecycle bench
//! writes thousands of copies with the two names patched (same length), to load a real
//! dependency chain of thousands of plugins.
#![forbid(unsafe_code)]

use plugin_api::serde_json::Value;
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Link;

impl Plugin for Link {
    const MANIFEST: Manifest = Manifest::new("chain-link-00000", env!("CARGO_PKG_VERSION"))
        .depends_on(&[("chain-link-99999", "*")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        Ok(input)
    }
}

plugin_api::export_plugin!(Link);
