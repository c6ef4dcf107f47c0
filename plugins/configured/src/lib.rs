//! Test plugin `configured`: declares a JSON Schema for its configuration, reads the validated
//! config into a typed struct in `new`, and answers with it.
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};
use serde::{Deserialize, Serialize};

/// The configuration, as the schema below describes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Config {
    /// The word to say.
    pub greeting: String,
    /// How many times (1 to 10, default 1).
    #[serde(default = "once")]
    pub times: usize,
}

fn once() -> usize {
    1
}

/// Keeps the config it was built with.
#[derive(Debug)]
pub struct Configured {
    config: Config,
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

    fn new(ctx: &Context) -> Result<Self> {
        Ok(Self {
            config: ctx.config()?,
        })
    }

    fn execute(&mut self, _ctx: &Context, _input: Value) -> Result<Value> {
        let said = vec![self.config.greeting.as_str(); self.config.times].join(" ");
        Ok(json!({ "said": said, "config": self.config }))
    }
}

plugin_api::export_plugin!(Configured);
