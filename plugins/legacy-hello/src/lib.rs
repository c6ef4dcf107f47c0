//! Test plugin `legacy-hello`: built against the frozen `plugin-api` 0.1.0 (ABI 1.1, in
//! `tests/compat/plugin-api-1.1`), so the current host is checked to load a plugin built before
//! its latest `plugin-api` (`tests/tests/compat.rs`). It uses that release's glue end to end:
//! every host service it calls goes through the old `HostVTable` declarations.
//!
//! Ops (`{"op": ...}`):
//! - none: answers `{"greeting": "hello from 1.1, NAME", "calls": N}` itself.
//! - `greet` `{name}`: asks its dependency `hello` (a current plugin) and decorates its answer.
//! - `emit` `{name, payload}`: emits an event.
//! - `seen`: the events its `legacy:*` handler received, `{"events": [{name, payload}]}`.
//! - `resources`: calls every operation of the config, tables, topics and buckets services
//!   (its table `notes`, topic `pings` and bucket `files`) and answers what each returned
//!   (`resources.rs`).
//! - `consumed`: the messages its `pings` consumer received, `{"messages": [...]}`.
#![forbid(unsafe_code)]

mod resources;

use std::sync::{Arc, Mutex, PoisonError};

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Event, Manifest, Plugin, Result};

/// Counts its own answers and shares the events seen with its handler.
#[derive(Debug, Default)]
pub struct LegacyHello {
    calls: u64,
    seen: Arc<Mutex<Vec<Value>>>,
    consumed: Arc<Mutex<Vec<Value>>>,
}

impl Plugin for LegacyHello {
    const MANIFEST: Manifest = Manifest::new("legacy-hello", env!("CARGO_PKG_VERSION"))
        .description("a plugin built against plugin-api 0.1.0")
        .depends_on(&[("hello", "^1")])
        .tables(&["notes"])
        .topics(&["pings"])
        .buckets(&["files"]);

    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        let seen = Arc::clone(&self.seen);
        // The handler holds no clone of the context: this release's glue does not break the
        // cycle such a clone would form.
        ctx.on("legacy:*", move |e: &Event<'_>| {
            let payload = e.json::<Value>()?;
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(json!({ "name": e.name(), "payload": payload }));
            Ok(())
        })?;
        ctx.info("legacy-hello is ready");
        Ok(())
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        match input["op"].as_str() {
            Some("greet") => {
                let out = ctx.dependency("hello")?.execute(&input)?;
                let greeting = out["greeting"].as_str().ok_or("hello gave no greeting")?;
                Ok(json!({ "greeting": format!("{greeting} (via 1.1)") }))
            }
            Some("emit") => {
                let name = input["name"].as_str().ok_or("name missing")?;
                ctx.emit(name, &input["payload"])?;
                Ok(json!({ "emitted": name }))
            }
            Some("resources") => resources::resources(ctx, &self.consumed),
            Some("consumed") => {
                let messages = self.consumed.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(json!({ "messages": *messages }))
            }
            Some("seen") => {
                let events = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(json!({ "events": *events }))
            }
            _ => {
                self.calls += 1;
                let name = input["name"].as_str().unwrap_or("world");
                Ok(json!({ "greeting": format!("hello from 1.1, {name}"), "calls": self.calls }))
            }
        }
    }
}

plugin_api::export_plugin!(LegacyHello);
