//! Topics benchmark on the embedded in-process log (run by `scripts/bench.sh`): produce
//! throughput through the repository (a real plugin producing in a loop: FFI call, envelope,
//! scoping, append) and end-to-end consume throughput (the host's consumer handing each message
//! to the plugin's handler on its own thread and committing it).
//!
//! `cargo bench -p integration --bench topics -- [--quick]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{ManagerConfig, PluginManager, TopicsConfig};
use serde_json::json;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 20_000 } else { 200_000 };
    build();
    let m = PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Memory {
        prefix: "bench".into(),
    }))
    .unwrap();
    m.load(plugin("topics-demo")).unwrap();
    println!("plugin-host topics bench (in-process log): {n} messages");

    let t = Instant::now();
    m.execute(
        "topics-demo",
        &json!({"op": "produce", "topic": "orders", "count": n}),
    )
    .unwrap();
    let produce = t.elapsed();
    println!(
        "produce through the repository: {n} in {produce:.2?} = {:.0} msg/s ({:.2?}/msg)",
        n as f64 / produce.as_secs_f64(),
        produce / n as u32
    );

    let t = Instant::now();
    m.execute(
        "topics-demo",
        &json!({"op": "subscribe", "topic": "orders"}),
    )
    .unwrap();
    loop {
        let consumed = m.get("topics-demo").unwrap().stats.messages_consumed;
        if consumed >= n || t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let consume = t.elapsed();
    let consumed = m.get("topics-demo").unwrap().stats.messages_consumed;
    assert_eq!(consumed, n, "every message handled");
    println!(
        "consume (deliver to the plugin's handler, commit): {n} in {consume:.2?} = {:.0} msg/s",
        n as f64 / consume.as_secs_f64()
    );
}
