//! Test plugin `jobs-demo`: declares two job kinds and two schedules, the declaration layer of
//! durable jobs (`docs/jobs.md`). The declarations are inert until the queue exists; the
//! functions that would run the jobs can be called directly.
//!
//! - job `send_email` runs `send_email_fn` on `form:submitted` and `user:*` events, 5 attempts,
//!   backoff base 500 ms capped at 1 minute, 10 s timeout, deduped by the event's id and the
//!   payload's `/user/id`, priority -1;
//! - job `cleanup` runs `cleanup_fn` with the defaults;
//! - schedule `nightly` enqueues `cleanup` at 03:00 in Paris, `poll` every 30 seconds.
#![forbid(unsafe_code)]

use plugin_api::jobs::{Backoff, Job, Schedule};
use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};

/// The plugin: how many jobs its functions ran.
#[derive(Debug, Default)]
pub struct JobsDemo {
    runs: u64,
}

impl Plugin for JobsDemo {
    const MANIFEST: Manifest = Manifest::new("jobs-demo", env!("CARGO_PKG_VERSION"))
        .description("declares job kinds and schedules")
        .functions(&[
            Function::new("send_email_fn").summary("sends the email a job asks for"),
            Function::new("cleanup_fn").summary("cleans up"),
        ])
        .jobs(&[
            Job::new("send_email", "send_email_fn")
                .triggers(&["form:submitted", "user:*"])
                .max_attempts(5)
                .backoff(Backoff::exponential(500, 60_000))
                .timeout_ms(10_000)
                .dedupe("{event.id}-{payload./user/id}")
                .priority(-1),
            Job::new("cleanup", "cleanup_fn"),
        ])
        .schedules(&[
            Schedule::cron("nightly", "0 3 * * *", "Europe/Paris", "cleanup"),
            Schedule::every("poll", 30_000, "send_email"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self::default())
    }

    fn functions(f: &mut Functions<Self>) {
        f.add("send_email_fn", Self::send_email)
            .add("cleanup_fn", Self::cleanup);
    }
}

impl JobsDemo {
    /// Answers what it would send, counting the run.
    fn send_email(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
        self.runs += 1;
        Ok(json!({ "sent": input, "runs": self.runs }))
    }

    /// Counts the run.
    fn cleanup(&mut self, _ctx: &Context, _: Value) -> Result<Value> {
        self.runs += 1;
        Ok(json!({ "runs": self.runs }))
    }
}

plugin_api::export_plugin!(JobsDemo);
