//! Test plugin `panicker`: `{"panic": true}` panics inside `execute`; anything else echoes.
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Panicker;

impl Plugin for Panicker {
    const MANIFEST: Manifest = Manifest::new("panicker", env!("CARGO_PKG_VERSION"));

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        if input["panic"] == true {
            panic!("panicker was asked to panic");
        }
        if input["fail"] == true {
            return Err(plugin_api::Error::new(
                "asked_to_fail",
                "panicker was asked to fail",
            ));
        }
        Ok(json!({ "echo": input }))
    }
}

plugin_api::export_plugin!(Panicker);
