//! Embedding `plugin-host` as a library: load the example plugins from a folder, follow
//! lifecycle events on the bus, call a plugin that calls its dependency, reload it, unload all.
//!
//! ```sh
//! cargo build -p plugin-hello -p plugin-greeter
//! cargo run -p example-embed -- target/debug
//! ```

use std::sync::Arc;

use anyhow::{Context as _, bail};
use plugin_host::{BusEvent, ManagerConfig, PluginManager};
use serde_json::json;

#[allow(clippy::print_stdout, reason = "an example prints what it shows")]
fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/debug".into());
    let manager = PluginManager::new(ManagerConfig::default())?;

    // Lifecycle events arrive on the same bus plugins use.
    manager.bus().subscribe_host(
        "plugin:*",
        false,
        Arc::new(|e: &BusEvent| {
            println!("event {}: {}", e.name, String::from_utf8_lossy(&e.payload))
        }),
    )?;

    let report = manager
        .load_dir(&dir)
        .with_context(|| format!("loading {dir}"))?;
    println!("loaded {:?}", report.loaded);
    if !report.loaded.iter().any(|n| n == "greeter") {
        bail!("greeter was not loaded from {dir}; build it first (cargo build -p plugin-greeter)");
    }

    let out = manager.execute("greeter", &json!({ "name": "ada" }))?;
    println!("greeter says {}", out["greeting"]);

    let reloaded = manager.reload("hello")?;
    println!("hello reloaded as generation {}", reloaded.generation);
    let out = manager.execute("greeter", &json!({ "name": "grace" }))?;
    println!(
        "greeter says {} (via hello generation {})",
        out["greeting"], out["hello_generation"]
    );

    let unloaded = manager.unload("hello", true)?;
    println!("unloaded {:?}: {:?}", unloaded.unloaded, unloaded.outcome);
    Ok(())
}
