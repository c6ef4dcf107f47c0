//! Example plugin `hello`: greets by name through a typed function, and keeps `execute` as its
//! default function for untyped callers.
//!
//! - `greet` `{"name": "ada"}` → `{"greeting": "hello, ada"}` (`name` defaults to `world`);
//! - `count` `null` → how many greetings it gave, to show that a plugin keeps state;
//! - `execute` `{"name": "..."}` greets too, and `{"op": "count"}` answers the count;
//! - the public route `GET /plugins/hello/greet?name=ada` (application listener) greets too, the
//!   same work as `execute`, so the two listeners can be compared (`scripts/loadtest.sh`).
#![forbid(unsafe_code)]

use plugin_api::http::{HttpRequest, HttpResponse, Route};
use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result, log};
use serde::{Deserialize, Serialize};

/// Who to greet.
#[derive(Debug, Deserialize)]
pub struct Who {
    /// The name; `world` when absent.
    #[serde(default = "world")]
    pub name: String,
}

fn world() -> String {
    "world".to_owned()
}

/// A greeting.
#[derive(Debug, Serialize)]
pub struct Greeting {
    /// `hello, NAME`.
    pub greeting: String,
}

/// The plugin's state: how many greetings it gave.
#[derive(Debug)]
pub struct Hello {
    calls: u64,
}

impl Plugin for Hello {
    const MANIFEST: Manifest = Manifest::new("hello", env!("CARGO_PKG_VERSION"))
        .description("answers greetings")
        .functions(&[
            Function::new("greet")
                .summary("greets someone by name")
                .input_schema(
                    r#"{"type":"object","properties":{"name":{"type":"string","minLength":1}},"additionalProperties":false}"#,
                )
                .output_schema(
                    r#"{"type":"object","properties":{"greeting":{"type":"string"}},"required":["greeting"]}"#,
                ),
            Function::new("count")
                .summary("how many greetings were given")
                .output_schema(r#"{"type":"integer","minimum":0}"#),
            Function::new("greet_http").summary("greets ?name= over HTTP"),
        ])
        .routes(&[Route::get("/greet", "greet_http").summary("greets ?name= (default world)")]);

    fn new(_ctx: &Context) -> Result<Self> {
        log::info!("hello is ready");
        Ok(Self { calls: 0 })
    }

    fn functions(f: &mut Functions<Self>) {
        f.add("greet", Self::greet)
            .add_shared("count", Self::count)
            .add("greet_http", Self::greet_http);
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        if input["op"] == "count" {
            return Ok(json!({ "count": self.calls }));
        }
        let name = input["name"].as_str().unwrap_or("world").to_owned();
        Ok(json!(self.greet(ctx, Who { name })?))
    }
}

impl Hello {
    /// Greets `who`, counting the greeting.
    fn greet(&mut self, _ctx: &Context, who: Who) -> Result<Greeting> {
        self.calls += 1;
        log::info!("greeting {}", who.name);
        Ok(Greeting {
            greeting: format!("hello, {}", who.name),
        })
    }

    /// `GET /greet?name=NAME`: [`Hello::greet`] as an HTTP route.
    fn greet_http(&mut self, ctx: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let name = req.query.get("name").map_or_else(world, Clone::clone);
        HttpResponse::ok(&self.greet(ctx, Who { name })?)
    }

    /// How many greetings were given.
    fn count(&self, _ctx: &Context, _: ()) -> Result<u64> {
        Ok(self.calls)
    }
}

plugin_api::export_plugin!(Hello);
