//! Test plugin `job-runner`: job kinds whose attempts do what their input says, for the tests
//! and the benchmark of the durable job queue (`docs/jobs.md`).
//!
//! - job `work` runs `work_fn` on `work:*` events (the event's payload is the input), 3
//!   attempts, backoff base 20 ms capped at 100 ms, 5 s timeout, deduplicated by the payload's
//!   `/key` (a payload without one is not deduplicated);
//! - job `slow` runs `work_fn` too, with a 300 ms timeout and 2 attempts, enqueued by operators;
//! - job `tick` runs `tick_fn`, 1 attempt, enqueued by the schedule `ticker` every second;
//! - job `noop` runs `noop_fn` on `noop:*` events (the benchmark's no-op job), 1 attempt.
//!
//! `work_fn` takes `{"id": "...", "fail_times": n, "panic": bool, "sleep_ms": n, "key": "..."}`
//! (only `id` required, unknown fields refused): it sleeps, then panics if asked, then fails
//! its first `fail_times` runs for that `id` and succeeds after. `emit_fn` emits an event as the
//! plugin (`{"name": "...", "payload": ...}`). A config `{"fail_init": true}` makes `initialize`
//! fail (a reload that fails).
#![forbid(unsafe_code)]

use std::collections::HashMap;

use plugin_api::jobs::{Backoff, Job, Schedule};
use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Function, Functions, Manifest, Plugin, Result};
use serde::Deserialize;

/// The input of `work_fn`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Work {
    id: String,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    #[allow(dead_code, reason = "read by the dedupe template, not by the function")]
    key: Option<String>,
}

/// The input of `emit_fn`.
#[derive(Debug, Deserialize)]
struct Emit {
    name: String,
    payload: Value,
}

/// The plugin: runs per work id, and ticks.
#[derive(Debug, Default)]
pub struct JobRunner {
    runs: HashMap<String, u32>,
    ticks: u64,
}

impl Plugin for JobRunner {
    const MANIFEST: Manifest = Manifest::new("job-runner", env!("CARGO_PKG_VERSION"))
        .description("job kinds that succeed, fail, panic, sleep or refuse their input")
        .functions(&[
            Function::new("work_fn").summary("does what its input says"),
            Function::new("tick_fn").summary("counts ticks"),
            Function::new("noop_fn").summary("does nothing"),
            Function::new("emit_fn").summary("emits an event as the plugin"),
        ])
        .jobs(&[
            Job::new("work", "work_fn")
                .triggers(&["work:*"])
                .max_attempts(3)
                .backoff(Backoff::exponential(20, 100))
                .timeout_ms(5_000)
                .dedupe("{payload/key}"),
            Job::new("slow", "work_fn")
                .max_attempts(2)
                .backoff(Backoff::exponential(10, 10))
                .timeout_ms(300),
            Job::new("tick", "tick_fn").max_attempts(1),
            Job::new("noop", "noop_fn")
                .triggers(&["noop:*"])
                .max_attempts(1),
        ])
        .schedules(&[Schedule::every("ticker", 1_000, "tick")]);

    fn new(ctx: &Context) -> Result<Self> {
        if ctx.config_value()?["fail_init"] == true {
            return Err(Error::new("refused", "the config asks initialize to fail"));
        }
        Ok(Self::default())
    }

    fn functions(f: &mut Functions<Self>) {
        f.add("work_fn", Self::work)
            .add("tick_fn", Self::tick)
            .add("noop_fn", Self::noop)
            .add("emit_fn", Self::emit);
    }
}

impl JobRunner {
    fn work(&mut self, _ctx: &Context, input: Work) -> Result<Value> {
        if input.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(input.sleep_ms));
        }
        assert!(!input.panic, "job {} asked to panic", input.id);
        let runs = self.runs.entry(input.id.clone()).or_default();
        *runs += 1;
        if *runs <= input.fail_times {
            return Err(Error::new(
                "flaky",
                format!("run {runs} of {} fails as asked", input.id),
            ));
        }
        Ok(json!({ "id": input.id, "run": *runs }))
    }

    fn tick(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        self.ticks += 1;
        Ok(json!({ "ticks": self.ticks, "input": input }))
    }

    fn noop(&mut self, _ctx: &Context, _input: Value) -> Result<Value> {
        Ok(Value::Null)
    }

    fn emit(&mut self, ctx: &Context, input: Emit) -> Result<Value> {
        ctx.emit(&input.name, &input.payload)?;
        Ok(json!({ "emitted": input.name }))
    }
}

plugin_api::export_plugin!(JobRunner);
