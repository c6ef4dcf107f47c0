//! Example plugin `greeter`: depends on `hello` and calls it through a dependency handle.
//!
//! - `greet` `{"name": "ada"}` calls hello's typed `greet` and adds an exclamation mark;
//! - `execute` `{"name": "ada"}` does the same through hello's untyped `execute`;
//!   `{"op": "undeclared"}` asks for a plugin it did not declare, to show that the host refuses
//!   it; `{"op": "fresh"}` uses a handle obtained now rather than the one kept since `new`;
//!   `{"op": "call", "function": F, "input": I}` calls hello's function `F` with `I`, typed as
//!   any JSON (to show the host's checks on dependency calls).
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, DependencyHandle, Function, Functions, Manifest, Plugin, Result};
use serde::{Deserialize, Serialize};

/// Who to greet, as hello's `greet` takes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Who {
    /// The name.
    pub name: String,
}

/// hello's answer, and greeter's.
#[derive(Debug, Serialize, Deserialize)]
pub struct Greeting {
    /// The greeting.
    pub greeting: String,
}

/// Holds the handle to `hello`, obtained once in `new`.
#[derive(Debug)]
pub struct Greeter {
    hello: DependencyHandle,
}

impl Plugin for Greeter {
    const MANIFEST: Manifest = Manifest::new("greeter", env!("CARGO_PKG_VERSION"))
        .description("decorates hello's greeting")
        .depends_on(&[("hello", "^1")])
        .functions(&[Function::new("greet")
            .summary("hello's greeting, with an exclamation mark")
            .input_schema(
                r#"{"type":"object","properties":{"name":{"type":"string","minLength":1}},"required":["name"]}"#,
            )]);

    fn new(ctx: &Context) -> Result<Self> {
        Ok(Self {
            hello: ctx.dependency("hello")?,
        })
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("greet", Self::greet);
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        match input["op"].as_str() {
            Some("undeclared") => {
                let target = input["target"].as_str().unwrap_or("panicker");
                ctx.dependency(target)?;
                Ok(json!({ "reached": target }))
            }
            Some("fresh") => ctx.dependency("hello")?.execute(&input),
            Some("call") => {
                let function = input["function"].as_str().unwrap_or_default();
                self.hello.call::<Value, Value>(function, &input["input"])
            }
            _ => {
                let out = self.hello.execute(&input)?;
                let greeting = out["greeting"].as_str().unwrap_or_default();
                Ok(
                    json!({ "greeting": format!("{greeting}!"), "hello_generation": self.hello.generation() }),
                )
            }
        }
    }
}

impl Greeter {
    /// hello's typed `greet`, decorated.
    fn greet(&self, _ctx: &Context, who: Who) -> Result<Greeting> {
        let Greeting { greeting } = self.hello.call("greet", &who)?;
        Ok(Greeting {
            greeting: format!("{greeting}!"),
        })
    }
}

plugin_api::export_plugin!(Greeter);
