//! Test plugin `versioned`, built twice from this file: as `plugin-versioned` (1.0.0, answers
//! "1") and as `plugin-versioned-v2` (2.0.0, answers "2"). The answer is the package's major
//! version, not a cargo feature, so a `--all-features` build of the workspace builds each as
//! itself. Both declare the name
//! `versioned`, so one can replace the other in a reload. For atomic-reload tests, version 2
//! fails its initialize while the file [`fail_marker`] exists (named after the host's process
//! id, so concurrent test runs do not interfere).
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Manifest, Plugin, Result};

/// Stateless.
#[derive(Debug)]
pub struct Versioned;

/// The package's major version: "1" or "2".
const ANSWER: &str = env!("CARGO_PKG_VERSION_MAJOR");
/// Whether this is the build of version 2.
const IS_V2: bool = matches!(ANSWER.as_bytes(), b"2");

/// While this file exists, version 2's initialize fails.
pub fn fail_marker() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("versioned-v2-fail-init-{}", std::process::id()))
}

impl Plugin for Versioned {
    const MANIFEST: Manifest = Manifest::new("versioned", env!("CARGO_PKG_VERSION"));

    fn new(_ctx: &Context) -> Result<Self> {
        if IS_V2 && fail_marker().exists() {
            return Err(Error::new("not_ready", "version 2 was told to fail"));
        }
        Ok(Self)
    }

    fn execute(&mut self, _ctx: &Context, _input: Value) -> Result<Value> {
        Ok(json!({ "version": ANSWER }))
    }
}

plugin_api::export_plugin!(Versioned);
