//! Concurrent plugins (`export_plugin!(T, concurrent)`): their shared functions run on a pool of
//! host threads of the plugin's own, sized per plugin by the operator (`threads`), every one of
//! them joined before the library closes. Timing tests, so a test binary of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{ManagerConfig, PluginManager, PluginSettings, UnloadOutcome};
use serde_json::json;

fn load_parallel(threads: Option<usize>) -> PluginManager {
    let m = manager();
    m.load_with(
        plugin("parallel"),
        PluginSettings::new(None, None).with_threads(threads),
    )
    .unwrap_or_else(|e| panic!("{}", e.chain()));
    m
}

/// Runs `n` calls of `sleep(ms)` at once; returns how long they took together.
fn concurrent_sleeps(m: &Arc<PluginManager>, n: usize, ms: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let m = Arc::clone(m);
            std::thread::spawn(move || m.call("parallel", "sleep", &json!(ms)))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), json!(ms));
    }
    start.elapsed()
}

#[test]
fn a_pool_of_eight_answers_eight_calls_at_once_and_unmaps_after() {
    let m = Arc::new(load_parallel(Some(8)));
    let info = m.get("parallel").unwrap();
    assert_eq!(info.functions[0].name, "sleep");
    let took = concurrent_sleeps(&m, 8, 100);
    assert!(
        took < Duration::from_millis(400),
        "8 calls of 100 ms took {took:?} on a pool of 8"
    );
    let report = m.unload("parallel", false).unwrap();
    assert_eq!(report.outcome["parallel"], UnloadOutcome::Unmapped);
}

#[test]
fn a_pool_of_one_runs_the_calls_one_after_another() {
    let m = Arc::new(load_parallel(Some(1)));
    let took = concurrent_sleeps(&m, 8, 100);
    assert!(
        took >= Duration::from_millis(800),
        "8 calls of 100 ms took only {took:?} on a pool of 1"
    );
    let report = m.unload("parallel", false).unwrap();
    assert_eq!(report.outcome["parallel"], UnloadOutcome::Unmapped);
}

#[test]
fn pool_size_is_bounded() {
    for bad in [0, 65] {
        let m = manager();
        let e = m
            .load_with(
                plugin("parallel"),
                PluginSettings::new(None, None).with_threads(Some(bad)),
            )
            .unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_config", "{bad}: {e}");
        assert!(m.list().is_empty());
    }
}

#[test]
fn a_call_waiting_for_a_busy_pool_times_out_with_the_typed_error() {
    let m = PluginManager::new(
        ManagerConfig::default()
            .with_initialize_timeout(Duration::from_secs(10))
            .with_execute_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    m.load_with(
        plugin("parallel"),
        PluginSettings::new(None, None).with_threads(Some(1)),
    )
    .unwrap();
    let m = Arc::new(m);
    let busy = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.call("parallel", "sleep", &json!(250)))
    };
    // Wait until the first call occupies the pool's only thread (its stats count it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.get("parallel").unwrap().stats.executes == 0 {
        assert!(Instant::now() < deadline, "the first call never started");
        std::thread::yield_now();
    }
    let e = m.call("parallel", "sleep", &json!(250)).unwrap_err();
    assert_eq!(e.code().as_str(), "timeout", "{e}");
    assert_eq!(busy.join().unwrap().unwrap(), json!(250));
}

#[test]
fn inspect_reads_the_concurrent_flag_before_opening() {
    assert!(
        plugin_host::inspect(&plugin("parallel"))
            .unwrap()
            .concurrent
    );
    assert!(!plugin_host::inspect(&plugin("hello")).unwrap().concurrent);
}
