//! Test plugin `lingering`: keeps its context alive past its unload, as a careless plugin would,
//! so that the tests can check from outside that the host copes. Its config names a folder
//! (`{"dir": "..."}`) where it records what happened; without one it records nothing.
//!
//! - `initialize` subscribes a handler that captures a clone of the plugin's `Context` (a cycle:
//!   context → handler map → handler → context) and owns a guard whose drop appends a line to
//!   `DIR/drops`. The host's glue must break the cycle when the instance is destroyed, so one
//!   line per retired instance.
//! - `{"op": "spawn"}` starts a thread that keeps a clone of the context and calls the host
//!   through it (`config`) every millisecond, past the plugin's unload. The first failure's code
//!   goes to `DIR/thread-first`; every 50 failed calls, and when it stops, it writes
//!   `CODES FAILED` (the distinct codes of the failed calls and how many failed) to
//!   `DIR/thread-state`, with ` stopped` appended when it exits. It stops once the file
//!   `DIR/stop` exists, or after 60 s.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Manifest, Plugin, Result};

/// Appends `dropped` to its file when dropped: the handler's state reporting its drop.
#[derive(Debug)]
struct DropGuard {
    file: PathBuf,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
        {
            let _ = f.write_all(b"dropped\n");
        }
    }
}

/// The folder it records into, from its config.
#[derive(Debug)]
pub struct Lingering {
    dir: Option<PathBuf>,
}

impl Plugin for Lingering {
    const MANIFEST: Manifest = Manifest::new("lingering", env!("CARGO_PKG_VERSION"))
        .description("keeps its context alive past its unload");

    fn new(ctx: &Context) -> Result<Self> {
        let dir = ctx.config_value()?["dir"].as_str().map(PathBuf::from);
        let Some(dir) = dir else {
            return Ok(Self { dir: None });
        };
        let guard = DropGuard {
            file: dir.join("drops"),
        };
        let held = ctx.clone();
        ctx.on("lingering:ping", move |_event| {
            let _ = &guard;
            held.emit("lingering:pong", &json!({}))
        })?;
        Ok(Self { dir: Some(dir) })
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        if input["op"] != "spawn" {
            return Ok(json!({ "ok": true }));
        }
        let dir = self.dir.clone().ok_or("no dir configured")?;
        let ctx = ctx.clone();
        std::thread::spawn(move || calls_until_stopped(&ctx, &dir));
        Ok(json!({ "spawned": true }))
    }
}

/// The thread left running: calls the host through `ctx` until told to stop.
fn calls_until_stopped(ctx: &Context, dir: &std::path::Path) {
    let started = Instant::now();
    let mut codes = BTreeSet::new();
    let mut failed = 0u64;
    let state = |codes: &BTreeSet<String>, failed: u64| {
        let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
        format!("{} {failed}", codes.join(","))
    };
    while !dir.join("stop").exists() && started.elapsed() < Duration::from_secs(60) {
        if let Err(e) = ctx.config_value() {
            if failed == 0 {
                publish(&dir.join("thread-first"), &e.code);
            }
            failed += 1;
            codes.insert(e.code);
            if failed.is_multiple_of(50) {
                publish(&dir.join("thread-state"), &state(&codes, failed));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    publish(
        &dir.join("thread-state"),
        &format!("{} stopped", state(&codes, failed)),
    );
}

/// Writes a file whole (temporary name, then rename), so a reader never sees it half written.
fn publish(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

plugin_api::export_plugin!(Lingering);
