//! Reload under load through the watched folder (run by `scripts/bench.sh`): while a client thread
//! executes `versioned` continuously in-process, its file is replaced N times (alternating the
//! v1 and v2 builds, each copied to a temporary name and renamed over the old one). Reports the
//! calls per second, the failed calls (must be 0), and the reload latency: from the rename to the
//! first `execute` that returns the new version's answer (debounce included).
//!
//! Then the same through the real server: `plugin-host serve --watch` on the folder, and a
//! client calling `POST /api/v1/plugins/versioned/execute` over HTTP (keep-alive) continuously.
//!
//! `cargo bench -p integration --bench watch -- [--quick] [--replacements N]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{FolderWatcher, ManagerConfig, PluginManager, WatchOptions};
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn answer(m: &PluginManager) -> Option<String> {
    m.execute("versioned", &json!({}))
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let mut replacements: usize = if argv.iter().any(|a| a == "--quick") {
        10
    } else {
        100
    };
    if let Some(i) = argv.iter().position(|a| a == "--replacements") {
        replacements = argv[i + 1].parse().expect("a number");
    }
    build();
    let options = WatchOptions::default();
    println!(
        "plugin-host watch bench: {replacements} replacements of a plugin under continuous execute (debounce {:?}, settle {:?})",
        options.debounce, options.settle
    );

    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let manager = Arc::new(PluginManager::new(ManagerConfig::default()).unwrap());
    let watcher = FolderWatcher::start(Arc::clone(&manager), dir.path(), options).unwrap();
    assert_eq!(answer(&manager).as_deref(), Some("1"), "loaded at start");

    // The client: executes as fast as it can, counting calls and failures.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let client = {
        let (m, stop, calls, failures) = (
            Arc::clone(&manager),
            Arc::clone(&stop),
            Arc::clone(&calls),
            Arc::clone(&failures),
        );
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match m.execute("versioned", &json!({})) {
                    Ok(_) => {}
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        codes.push(e.code().as_str());
                    }
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            codes
        })
    };

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(replacements);
    for i in 0..replacements {
        let (build, want) = if i % 2 == 0 {
            ("versioned-v2", "2")
        } else {
            ("versioned", "1")
        };
        // Stage the copy first: the clock starts at the rename, as for an operator's `mv`.
        let tmp = file.with_extension("tmp");
        std::fs::copy(plugin(build), &tmp).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        let deadline = t + Duration::from_secs(10);
        while answer(&manager).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "replacement {i}: version {want} never answered"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let codes = client.join().unwrap();
    watcher.stop();

    let calls = calls.load(Ordering::Relaxed);
    let failures = failures.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let reloads = manager.metrics().reloads.load(Ordering::Relaxed);
    println!(
        "client: {calls} calls in {elapsed:.2?} = {:.0} calls/s; failed calls: {failures} {codes:?}",
        calls as f64 / elapsed.as_secs_f64()
    );
    println!(
        "reload latency (rename -> new answer), {} reloads: p50={:.1?} p99={:.1?} max={:.1?} (goal p50 <= 100 ms)",
        reloads,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    assert_eq!(failures, 0, "calls failed during reloads: {codes:?}");
    over_http(replacements);
}

/// The same run through `plugin-host serve --watch` and HTTP.
fn over_http(replacements: usize) {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let plugins = dir.path().to_string_lossy().into_owned();
    let server = Server::start(&["--plugins-dir", &plugins, "--watch"], &[]);
    let url = format!("{}/api/v1/plugins/versioned/execute", server.addr);
    let agent = ureq::AgentBuilder::new().build();
    let answer = |agent: &ureq::Agent| -> Result<String, String> {
        match agent.post(&url).send_json(json!({})) {
            Ok(r) => {
                let v: serde_json::Value = r.into_json().map_err(|e| e.to_string())?;
                Ok(v["output"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    assert_eq!(answer(&agent).as_deref(), Ok("1"), "loaded at start");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, agent, answer_url) = (Arc::clone(&stop), agent.clone(), url.clone());
        std::thread::spawn(move || {
            let (mut calls, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match agent.post(&answer_url).send_json(json!({})) {
                    Ok(_) => {}
                    Err(e) => failed.push(e.to_string()),
                }
                calls += 1;
            }
            (calls, failed)
        })
    };
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(replacements);
    for i in 0..replacements {
        let (build, want) = if i % 2 == 0 {
            ("versioned-v2", "2")
        } else {
            ("versioned", "1")
        };
        let tmp = file.with_extension("tmp");
        std::fs::copy(plugin(build), &tmp).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        let deadline = t + Duration::from_secs(10);
        while answer(&agent).as_deref() != Ok(want) {
            assert!(
                Instant::now() < deadline,
                "replacement {i}: version {want} never answered over HTTP"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (calls, failed) = client.join().unwrap();
    latencies.sort_unstable();
    println!(
        "over HTTP: {calls} calls in {elapsed:.2?} = {:.0} calls/s; failed calls: {}; reload latency p50={:.1?} p99={:.1?} max={:.1?}",
        calls as f64 / elapsed.as_secs_f64(),
        failed.len(),
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    assert!(
        failed.is_empty(),
        "HTTP calls failed during reloads: {:?}",
        &failed[..failed.len().min(5)]
    );
}
