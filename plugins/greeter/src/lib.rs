//! Example plugin `greeter`: depends on `hello` and calls it through a dependency handle.
//!
//! `{"name": "ada"}` returns hello's greeting with an exclamation mark. `{"op": "undeclared"}`
//! asks for a plugin it did not declare, to show that the host refuses it.
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, DependencyHandle, Manifest, Plugin, Result};

/// Holds the handle to `hello`, obtained once in `initialize`.
#[derive(Debug, Default)]
pub struct Greeter {
    hello: Option<DependencyHandle>,
}

impl Plugin for Greeter {
    const MANIFEST: Manifest = Manifest::new("greeter", env!("CARGO_PKG_VERSION"))
        .description("decorates hello's greeting")
        .depends_on(&[("hello", "^1")]);

    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        self.hello = Some(ctx.dependency("hello")?);
        Ok(())
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        match input["op"].as_str() {
            Some("undeclared") => {
                let target = input["target"].as_str().unwrap_or("panicker");
                ctx.dependency(target)?;
                Ok(json!({ "reached": target }))
            }
            Some("fresh") => {
                // A handle obtained now, rather than the one kept since initialize.
                let out = ctx.dependency("hello")?.execute(&input)?;
                Ok(out)
            }
            _ => {
                let hello = self.hello.as_ref().ok_or("not initialized")?;
                let out = hello.execute(&input)?;
                let greeting = out["greeting"].as_str().unwrap_or_default();
                Ok(
                    json!({ "greeting": format!("{greeting}!"), "hello_generation": hello.generation() }),
                )
            }
        }
    }
}

plugin_api::export_plugin!(Greeter);
