//! Test plugin `configured`: declares a JSON Schema for its configuration, reads the validated
//! config from its context in `initialize`, and answers with it.
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Keeps the config it was initialised with.
#[derive(Debug, Default)]
pub struct Configured {
    config: Value,
}

impl Plugin for Configured {
    const MANIFEST: Manifest = Manifest::new("configured", env!("CARGO_PKG_VERSION"))
        .tables(&["notes"])
        .config_schema(
            r#"{
                "type": "object",
                "properties": {
                    "greeting": { "type": "string", "minLength": 1 },
                    "times": { "type": "integer", "minimum": 1, "maximum": 10 }
                },
                "required": ["greeting"],
                "additionalProperties": false
            }"#,
        );

    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        self.config = ctx.config()?;
        Ok(())
    }

    fn execute(&mut self, _ctx: &Context, _input: Value) -> Result<Value> {
        let greeting = self.config["greeting"].as_str().unwrap_or_default();
        let times = self.config["times"].as_u64().unwrap_or(1) as usize;
        Ok(json!({ "said": vec![greeting; times].join(" "), "config": self.config }))
    }
}

plugin_api::export_plugin!(Configured);
