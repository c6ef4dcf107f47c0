//! Test plugin `parallel`: exported as `concurrent`, so its `&self` function `sleep` (sleeps the
//! requested milliseconds, answers them) runs on several host threads at once.
#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};

/// Stateless, hence `Sync`.
#[derive(Debug)]
pub struct Parallel;

impl Plugin for Parallel {
    const MANIFEST: Manifest = Manifest::new("parallel", env!("CARGO_PKG_VERSION"))
        .description("sleeps, concurrently")
        .functions(&[Function::new("sleep")
            .summary("sleeps the given milliseconds")
            .input_schema(r#"{"type":"integer","minimum":0,"maximum":10000}"#)]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("sleep", Self::sleep);
    }
}

impl Parallel {
    fn sleep(&self, _ctx: &Context, ms: u64) -> Result<u64> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    }
}

plugin_api::export_plugin!(Parallel, concurrent);
