//! Test plugin `function-mismatch`: its manifest declares `greet` and `wave`, but it registers
//! only `greet`, so the glue refuses to create it (`function_mismatch` naming `wave`).
#![forbid(unsafe_code)]

use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Mismatch;

impl Plugin for Mismatch {
    const MANIFEST: Manifest = Manifest::new("function-mismatch", env!("CARGO_PKG_VERSION"))
        .functions(&[Function::new("greet"), Function::new("wave")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("greet", Self::greet);
    }
}

impl Mismatch {
    fn greet(&self, _ctx: &Context, name: String) -> Result<String> {
        Ok(format!("hello, {name}"))
    }
}

plugin_api::export_plugin!(Mismatch);
